"""A sweep's plan: the study, its storage, its data and model, checked before anything trains."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from descentkit.studies import Dataset
from descentkit.tuner._materialize import check_before_trials, sweep_dataset
from descentkit.tuner._range_plan import LR_RANGE_ATTR, resolve_auto_learning_rate
from descentkit.tuner.config import ConfigError, StudyConfig, load_study
from descentkit.tuner.storage import StorageSpec


@dataclass
class SweepPlan:
    """What a sweep runs: `config` (with `learning_rate: auto` resolved), where it is
    stored, the data, and the user's model builder and callbacks, if any."""

    config: StudyConfig
    spec: StorageSpec
    dataset: Dataset
    builder: Callable[..., Any] | None
    callbacks: list[Any] | None
    lr_range: dict[str, Any] | None  # the range `learning_rate: auto` found (None: not auto)


def plan_sweep(study: StudyConfig | str | Path, *, storage: str | None, study_name: str | None, seed: int | None,
               workers: int, data: Dataset | tuple | None, build_model: Callable[..., Any] | None,
               callbacks: list[Any] | None) -> SweepPlan:
    """Load and check everything a sweep needs; a mistake is a one-line ConfigError before any training
    (before the range test of `learning_rate: auto` too, which runs last)."""
    config = study if isinstance(study, StudyConfig) else load_study(study)
    spec = StorageSpec(storage, study_name or config.name)
    spec.check()  # a storage mistake is one line now, not after the data and the model
    if seed is not None:
        config = config.model_copy(update={"seed": seed})
    if workers < 1:
        raise ConfigError(f"workers: must be at least 1, got {workers}")
    if workers > 1 and (data is not None or build_model is not None or callbacks):
        raise ConfigError("workers: several worker processes need a study file's dataset and model; "
                          "name them in the study (module:function) instead of passing data=/build_model=")
    dataset = sweep_dataset(config, data)
    auto = config.auto_learning_rate
    check_before_trials(config.with_learning_rate(1e-3, 1e-1) if auto else config, dataset, build_model)
    lr_range = None
    if auto:
        try:
            stored = spec.load_study().user_attrs.get(LR_RANGE_ATTR)
        except KeyError:  # no such study yet: test afresh
            stored = None
        config, lr_range = resolve_auto_learning_rate(config, dataset, build_model, stored, callbacks)
    return SweepPlan(config, spec, dataset, build_model, callbacks, lr_range)
