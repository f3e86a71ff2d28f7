"""`run_sweep`: plan the sweep, open its study, run its trials within the budget, summarise."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from descentkit.studies import Dataset
from descentkit.tuner._budget import Budget
from descentkit.tuner._plan import plan_sweep
from descentkit.tuner._run import SweepResult, run_trials
from descentkit.tuner._study import open_study, prepare, say_resuming


def run_sweep(
    study: Any | str | Path,
    *,
    trials: int | None = None,
    total_trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    workers: int = 1,
    data: Dataset | tuple | None = None,
    build_model: Callable[..., Any] | None = None,
    callbacks: list[Any] | None = None,
    progress: bool = True,
    tracking: bool = True,
    tracking_uri: str | None = None,
    experiment_name: str | None = None,
) -> SweepResult:
    """Run (or resume) a sweep and return its summary.

    Args:
        study: a `StudyConfig`, a built-in study name or a YAML path.
        trials: trials to add (default: the study's `trials`, unless `timeout` is given).
            Workers started together on one study share this budget.
        total_trials: instead of `trials`, stop once the study holds this many trials.
        timeout: stop starting new trials after this many seconds.
        storage: an Optuna storage URL or a journal-file path (default: an embedded
            journal file under ./descentkit_studies/).
        study_name: the stored study's name (default: the study's `name`).
        seed: overrides the study's seed.
        workers: worker processes on this machine (study files only: not with
            `data=` or `build_model=`). Each gets an equal share of the cores.
        data: your own arrays, `(x, y, x_val, y_val)` or a `Dataset`, overriding the study's dataset.
        build_model: your own `build_model(params[, data]) -> keras.Model`, overriding the study's model.
        callbacks: extra Keras callbacks for every `fit` the sweep runs (trials and range tests).
        progress: show a progress bar.
        tracking: log the sweep to MLflow: one parent run, one child run per trial.
        tracking_uri: default MLFLOW_TRACKING_URI, else MLflow's default
            (sqlite:///mlflow.db in the working directory).
        experiment_name: the MLflow experiment (default: the study name).

    Running the same sweep again resumes the stored study and adds trials.
    """
    started = time.monotonic()  # the timeout counts the range tests too
    plan = plan_sweep(study, storage=storage, study_name=study_name, seed=seed, workers=workers, data=data,
                      build_model=build_model, callbacks=callbacks)
    name = plan.spec.study_name
    optuna_study = open_study(plan.config, plan.spec)
    plan.config = prepare(optuna_study, plan.config, plan.lr_range, plan.dataset, build_model, plan.spec.lock(),
                          callbacks)
    if total_trials is not None:
        budget = Budget(optuna_study, total_trials)
    elif trials is not None or timeout is None:
        budget = Budget.adding(optuna_study, trials if trials is not None else plan.config.trials)
    else:
        budget = Budget(optuna_study, None)
    say_resuming(optuna_study, name, budget.finished(), budget.target)
    if timeout is not None:
        timeout = max(0.0, timeout - (time.monotonic() - started))
    return run_trials(plan, optuna_study, budget, timeout, workers, progress=progress, tracking=tracking,
                      tracking_uri=tracking_uri, experiment_name=experiment_name)
