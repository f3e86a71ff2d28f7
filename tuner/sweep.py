"""Run a sweep: open (or resume) the study, optimize with progress, summarise the result."""

from __future__ import annotations

import importlib.metadata
import logging
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from descentkit.studies import Dataset
from descentkit.tuner.config import ConfigError, StudyConfig, load_study
from descentkit.tuner.objective import Objective, as_dataset, load_dataset
from descentkit.tuner.results import StudySummary, summarize_study
from descentkit.tuner.storage import open_storage

_VERSIONED = ("descentkit", "tensorflow", "keras", "optuna", "mlflow", "numpy")


def make_sampler(config: StudyConfig, seed: int | None) -> Any:
    """The study's sampler. TPE is multivariate and grouped (the space is conditional)."""
    import optuna

    name, options = config.sampler.name, dict(config.sampler.options)
    if name == "tpe":
        options.setdefault("multivariate", True)
        options.setdefault("group", True)
        options.setdefault("n_startup_trials", 10)
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


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in _VERSIONED:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


@dataclass
class SweepResult:
    """What a sweep leaves: the Optuna study, where it is stored, and its summary."""

    study: Any
    storage: str
    summary: StudySummary


class _Progress:
    """A tqdm bar over trials showing the best value and the trials pruned or failed."""

    def __init__(self, total: int | None, enabled: bool, direction: str) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, disable=not enabled, unit="trial", dynamic_ncols=True, desc="sweep")
        self.direction = direction
        self.counts: dict[str, int] = {}

    def __call__(self, study: Any, trial: Any) -> None:
        state = trial.state.name.lower()
        self.counts[state] = self.counts.get(state, 0) + 1
        postfix = {k: v for k, v in self.counts.items() if k != "complete"}
        try:
            postfix = {"best": f"{study.best_value:.4g}", **postfix}
        except ValueError:  # no completed trial yet
            pass
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_sweep(
    study: StudyConfig | str | Path,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    data: Dataset | tuple | None = None,
    build_model: Callable[..., Any] | None = None,
    callbacks: list[Any] | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run (or resume) a sweep and return its summary.

    Args:
        study: a `StudyConfig`, a built-in study name or a YAML path.
        trials: trials to add (default: the study's `trials`, unless `timeout` is given).
        timeout: stop starting new trials after this many seconds.
        storage: an Optuna storage URL or a journal-file path (default: an embedded
            journal file under ./descentkit_studies/).
        study_name: the stored study's name (default: the study's `name`).
        seed: overrides the study's seed.
        data: your own arrays, `(x, y, x_val, y_val)` or a `Dataset`, overriding the study's dataset.
        build_model: your own `build_model(params[, data]) -> keras.Model`, overriding the study's model.
        callbacks: extra Keras callbacks for every trial's `fit`.
        progress: show a progress bar.

    Running the same sweep again resumes the stored study and adds trials.
    """
    import optuna

    config = study if isinstance(study, StudyConfig) else load_study(study)
    if seed is not None:
        config = config.model_copy(update={"seed": seed})
    name = study_name or config.name
    dataset = as_dataset(data, name="data") if data is not None else load_dataset(config)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store, location = open_storage(storage, name)
    # Seed the sampler with the number of trials already stored, so a resumed
    # random sampler does not propose the same parameters again.
    existing = 0
    try:
        existing = len(optuna.load_study(study_name=name, storage=store).trials)
    except KeyError:
        pass
    sampler_seed = None if config.seed is None else config.seed + existing
    optuna_study = optuna.create_study(
        storage=store,
        study_name=name,
        direction=config.objective.direction,
        sampler=make_sampler(config, sampler_seed),
        pruner=make_pruner(config),
        load_if_exists=True,
    )
    if existing == 0:
        optuna_study.set_user_attr("config", config.model_dump(mode="json"))
        optuna_study.set_user_attr("versions", _versions())
        optuna_study.set_user_attr("objective_metric", config.objective.metric)

    n_trials = trials if trials is not None else (None if timeout is not None else config.trials)
    bar = _Progress(n_trials, progress, config.objective.direction)
    objective = Objective(config, dataset, builder=build_model, callbacks=callbacks)
    # A failed trial is logged by Optuna at WARNING with its traceback; keep it to one line.
    logging.getLogger("optuna").setLevel(logging.ERROR)
    try:
        optuna_study.optimize(
            objective,
            n_trials=n_trials,
            timeout=timeout,
            catch=(Exception,),
            callbacks=[bar],
        )
    finally:
        bar.close()
    return SweepResult(optuna_study, location, summarize_study(optuna_study, location))
