"""How a study searches: its Optuna sampler and pruner."""

from __future__ import annotations

import warnings
from typing import Any

from descentkit.tuner.config import ConfigError, StudyConfig


def make_sampler(config: StudyConfig, seed: int | None) -> Any:
    """The study's sampler. TPE is multivariate and grouped (the space is conditional)."""
    import optuna

    name, options = config.sampler.name, dict(config.sampler.options)
    if name == "tpe":
        options.setdefault("multivariate", True)
        options.setdefault("group", True)
        options.setdefault("n_startup_trials", 10)
        with warnings.catch_warnings():  # multivariate/group are "experimental" since Optuna 2.x
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, **options)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed, **options)
    try:
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, **options)
        return optuna.samplers.CmaEsSampler(seed=seed, **options)
    except ImportError as exc:
        raise ConfigError(f"sampler.name: {name!r} needs an extra package ({exc}); install it or use tpe") from None


def make_pruner(config: StudyConfig) -> Any:
    """The study's Optuna pruner (a NopPruner for `brackets`: its halving runs in `BracketRunner`)."""
    import optuna

    name, options = config.pruner.name, dict(config.pruner.options)
    if name == "median":
        options.setdefault("n_startup_trials", 5)
        options.setdefault("n_warmup_steps", 2)
        return optuna.pruners.MedianPruner(**options)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**options)
    if name == "hyperband":
        options.setdefault("max_resource", config.max_epochs)
        return optuna.pruners.HyperbandPruner(**options)
    return optuna.pruners.NopPruner()
