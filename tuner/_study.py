"""Opening a sweep's Optuna study: created once, loaded by every later worker, with what it must know first.

Opening records the study's configuration and versions, stores or adopts the
range `learning_rate: auto` found, re-queues trials of workers that died, and
enqueues a new study's first trial from a range test (`first_trial: range_test`).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from collections.abc import Callable
from typing import Any

from descentkit.tuner import _record
from descentkit.tuner._range_plan import LR_RANGE_ATTR, propose_first_trial
from descentkit.tuner._recovery import recover
from descentkit.tuner._search import make_pruner, make_sampler

_VERSIONED = ("descentkit", "tensorflow", "keras", "optuna", "mlflow", "numpy")
# Workers on one study need different sampler seeds or they propose the same parameters.
WORKER_SEED_STRIDE = 7919


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in _VERSIONED:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def open_study(config: Any, spec: Any, worker_index: int = 0) -> Any:
    """Create or load the study stored at `spec` (a `StorageSpec`); safe when many workers start at once.

    The sampler is seeded with the study's seed, the number of trials already
    stored (a resumed random sampler does not propose the same parameters again)
    and the worker's index (and, on a server, its process id: workers on other
    machines have the same indices).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def create(store: Any) -> Any:
        try:
            existing = len(optuna.load_study(study_name=spec.study_name, storage=store).trials)
        except KeyError:
            existing = 0
        seed = None
        if config.seed is not None:
            salt = WORKER_SEED_STRIDE * worker_index + (os.getpid() if spec.on_a_server else 0)
            seed = (config.seed + existing + salt) % 2**32
        return optuna.create_study(storage=store, study_name=spec.study_name, direction=config.objective.direction,
                                   sampler=make_sampler(config, seed), pruner=make_pruner(config), load_if_exists=True)

    study = spec.open_with_retry(create)
    if "config" not in study.user_attrs:
        study.set_user_attr("config", config.model_dump(mode="json"))
        study.set_user_attr("versions", _versions())
        study.set_user_attr("objective_metric", config.objective.metric)
    return study


def prepare(study: Any, config: Any, lr_range: dict[str, Any] | None, dataset: Any,
            builder: Callable[..., Any] | None, lock: Any, callbacks: list[Any] | None) -> Any:
    """What an opened study needs before its trials; returns the config its trials search."""
    if lr_range is not None:
        stored = study.user_attrs.get(LR_RANGE_ATTR)
        if stored is None:
            study.set_user_attr(LR_RANGE_ATTR, lr_range)
        elif stored != lr_range:  # another worker tested first: search its range, as every worker must
            config = config.with_learning_rate(stored["low"], stored["high"])
    recovered = recover(study)
    if recovered:
        print(f"descentkit: re-queued trial(s) {', '.join(map(str, recovered))} left running by a worker that died",
              file=sys.stderr)
    propose_first_trial(study, config, dataset, builder, study.user_attrs.get(LR_RANGE_ATTR) if lr_range else None,
                        lock, callbacks)
    return config


def say_resuming(study: Any, name: str, stored: int, target: int | None) -> None:
    """One line when a sweep resumes a study that holds trials: how many, how many to run."""
    waiting = [t for t in study.get_trials(deepcopy=False) if t.state.name == "WAITING"]
    origins = [str(n) for t in waiting if (n := _record.retry_origin(t)) is not None]
    if not stored and not origins:  # a new study (its first trial may be queued already)
        return
    todo = "until the timeout" if target is None else f"{max(0, target - stored)} to run"
    line = f"descentkit: resuming study {name!r}: {stored} trials stored, {todo}"
    if origins:
        line += f"; first the re-queued trial(s) of {', '.join(origins)}"
    print(line, file=sys.stderr, flush=True)
