"""descentkit.tuner: Optuna sweeps of SGD-trained Keras models, their storage, results and reports.

Importing the package is cheap (pydantic and PyYAML): the names that need
Optuna, Keras or MLflow load their module on first use.

Example:
    from descentkit.tuner import StudyConfig, run_sweep

    config = StudyConfig(
        name="my-study",
        objective={"metric": "val_accuracy", "direction": "maximize"},
        max_epochs=10,
        search_space={"learning_rate": {"type": "float", "low": 1e-3, "high": 0.5, "log": True}},
    )
    result = run_sweep(config, data=(x, y, x_val, y_val), build_model=build_model, trials=20)
    print(result.summary.to_text())
"""

from __future__ import annotations

import importlib
from typing import Any

from descentkit.tuner.config import ConfigError, StudyConfig, load_study, parse_study

# name -> the module that defines it, imported on first use
_LAZY = {
    "StorageError": "_storage_url",
    "check_storage": "_storage_url",
    "StorageSpec": "storage",
    "default_storage_url": "storage",
    "open_storage": "storage",
    "StudySummary": "results",
    "summarize_study": "results",
    "trial_rows": "results",
    "SweepResult": "_run",
    "run_sweep": "sweep",
    "interrupts": "_interrupts",
    "limit_threads": "_worker",
    "lr_range_test": "lr_find",
    "build_optimizer": "sgd",
    "SweepTracker": "tracking",
    "relog_study": "tracking",
    "common_advice": "report",
    "pathology_map": "report",
    "pathology_text": "report",
    "plot_pathology_map": "report",
    "report_html": "report",
    "study_figures": "report",
    "write_report": "report",
}

__all__ = ["ConfigError", "StudyConfig", "load_study", "load_stored_study", "parse_study", *sorted(_LAZY)]


def load_stored_study(study_name: str, storage: str | None = None) -> Any:
    """The Optuna study a sweep stored (`storage`: as given to `run_sweep`; None: the
    embedded default); KeyError when the storage holds no study of that name."""
    from descentkit.tuner.storage import StorageSpec

    return StorageSpec(storage, study_name).load_study()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'descentkit.tuner' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"descentkit.tuner.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
