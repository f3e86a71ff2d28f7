"""descentkit.studies: built-in datasets, model builders and study files.

A built-in study is a YAML file beside this module naming a dataset loader
(`DATASETS`) and a model builder (`MODELS`). This package knows nothing of Optuna.
"""

from __future__ import annotations

from pathlib import Path

from descentkit.studies._dataset import TASKS, Dataset
from descentkit.studies._datasets import DATASETS
from descentkit.studies._files import infer_task
from descentkit.studies._models import MODELS, kernel_regularizer

_HERE = Path(__file__).resolve().parent


def builtin_study_names() -> list[str]:
    """Names of the built-in studies, sorted."""
    return sorted(p.stem for p in _HERE.glob("*.yaml"))


def builtin_study_path(name: str) -> Path:
    """The YAML file of a built-in study; KeyError when there is none by that name."""
    path = _HERE / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(name)
    return path


__all__ = [
    "DATASETS",
    "MODELS",
    "TASKS",
    "Dataset",
    "builtin_study_names",
    "builtin_study_path",
    "infer_task",
    "kernel_regularizer",
]
