"""Run a sweep: open (or resume) the study, optimize with progress, summarise the result."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import math
import os
import platform
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from descentkit.studies import Dataset
from descentkit.tuner.budget import (
    INTERRUPTED,
    BudgetLock,
    WaitLimit,
    check_interrupted,
    counted_trials,
    finished_trials,
    has_waiting,
    is_counted,
    may_still_need_rerun,
    recover,
    requeue_interrupted,
    signals_seen,
)
from descentkit.tuner.config import ConfigError, FloatParam, StudyConfig, load_study
from descentkit.tuner.objective import (
    Objective,
    OptionError,
    as_dataset,
    build_model as build_study_model,
    check_model_output,
    custom_gradient_names,
    free_keras_memory,
    frozen_heap,
    load_dataset,
    logged_metrics,
    representative_params,
)
from descentkit.tuner.lr_find import (
    LR_RANGE_ATTR,
    propose_first_trial,
    resolve_auto_learning_rate,
    wants_auto_learning_rate,
    with_learning_rate_range,
)
from descentkit.tuner.results import StudySummary, summarize_study
from descentkit.tuner.storage import StorageError, check_storage, describe_server_error, open_storage, redact

_VERSIONED = ("descentkit", "tensorflow", "keras", "optuna", "mlflow", "numpy")


def make_sampler(config: StudyConfig, seed: int | None) -> Any:
    """The study's sampler; with `narrow_learning_rate: true`, wrapped to keep to the stable band."""
    sampler = _base_sampler(config, seed)
    rate = config.search_space.get("learning_rate")
    if config.narrow_learning_rate and isinstance(rate, FloatParam):
        from descentkit.tuner.stable_band import StableBandSampler

        return StableBandSampler(sampler, seed=seed)
    return sampler


def _base_sampler(config: StudyConfig, seed: int | None) -> Any:
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
    return optuna.pruners.NopPruner()  # none, and brackets (the halving runs in tuner/brackets.py)


def make_brackets(config: StudyConfig) -> list[Any]:
    """The bracket schedule of `pruner: brackets` ([] for any other pruner)."""
    from descentkit.tuner.brackets import hyperband_brackets

    if config.pruner.name != "brackets":
        return []
    return hyperband_brackets(config.max_epochs, **config.pruner.options)


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in _VERSIONED:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def check_before_trials(config: StudyConfig, data: Dataset, builder: Callable[..., Any] | None = None) -> list[Any]:
    """Checks run once per sweep, before any trial: the objective metric is one
    `fit` will log, the model's output fits the data, and the data passes the
    preflight checks. A problem that would fail every trial raises ConfigError;
    warnings are printed and returned."""
    from descentkit.diagnostics import preflight_checks

    if config.model.compile == "auto" and config.objective.metric not in logged_metrics(data):
        raise ConfigError(
            f"objective.metric: {config.objective.metric!r} is not logged for a {data.task} task; "
            f"choose one of {', '.join(logged_metrics(data))}"
        )
    params = representative_params(config.search_space)
    kept = custom_gradient_names()
    try:
        model = build_study_model(config, params, data, builder)
    except OptionError as exc:
        raise ConfigError(str(exc)) from None
    except Exception as exc:  # maybe only these parameters: let the trials show it
        print(f"descentkit: warning: building the model with {params} raised {type(exc).__name__}: {exc}", file=sys.stderr)
        model = None
    try:
        if model is not None:
            check_model_output(model, data)
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None
    finally:
        free_keras_memory(keep_gradients=kept)
    findings = preflight_checks(
        data.x_train, data.y_train,
        output_activation=data.output_activation, loss=data.loss, output_units=data.output_units,
    )
    for finding in findings:
        if finding.severity == "critical":
            raise ConfigError(f"dataset: {finding.message} {finding.advice}")
        print(f"descentkit: warning: {finding}", file=sys.stderr)
    return findings


@dataclass
class SweepResult:
    """What a sweep leaves: the Optuna study, where it is stored, its summary and, when
    MLflow logged it, where (`tracking`: `SweepTracker.location`; `tracking_text`: that
    as the line the CLI ends with, the command to open the UI included)."""

    study: Any
    storage: str
    summary: StudySummary
    tracking: dict[str, Any] | None = None
    tracking_text: str | None = None


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


def open_study(config: StudyConfig, name: str, storage: str | None, worker_index: int = 0,
               attempts: int = 5) -> tuple[Any, str]:
    """Create or load the stored study; safe when many workers start at once.

    Two workers creating the tables of an empty PostgreSQL database at the same
    moment make one of them fail (shared/DESIGN.md): such a failure is retried
    after a short random wait, by which time the other has created them.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for attempt in range(attempts):
        try:
            store, location = open_storage(storage, name)
            # Seed the sampler with the number of trials already stored, so a resumed
            # random sampler does not propose the same parameters again.
            try:
                existing = len(optuna.load_study(study_name=name, storage=store).trials)
            except KeyError:
                existing = 0
            sampler_seed = None
            if config.seed is not None:
                # Workers on one study need different seeds or they propose the same
                # parameters; on a server store, workers on other machines do too.
                salt = 7919 * worker_index + (os.getpid() if storage and "://" in storage and not storage.startswith("sqlite") else 0)
                sampler_seed = (config.seed + existing + salt) % 2**32
            study = optuna.create_study(
                storage=store,
                study_name=name,
                direction=config.objective.direction,
                sampler=make_sampler(config, sampler_seed),
                pruner=make_pruner(config),
                load_if_exists=True,
            )
            break
        except ConfigError:
            raise
        except Exception as exc:
            if attempt == attempts - 1 or storage is None:
                failure = _storage_failure(storage, exc)
                if failure is exc:
                    raise
                raise failure from None
            time.sleep(0.2 + random.random() * (attempt + 1))
    if "config" not in study.user_attrs:
        study.set_user_attr("config", config.model_dump(mode="json"))
        study.set_user_attr("versions", _versions())
        study.set_user_attr("objective_metric", config.objective.metric)
    return study, location


def _storage_failure(storage: str | None, exc: Exception) -> Exception:
    """A StorageError with one line for a storage that failed while the study was opened
    (a read-only database, a server gone), else `exc` itself."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    shown = redact(storage) if storage is not None else "(the embedded journal file)"
    if isinstance(exc, sqlalchemy.exc.SQLAlchemyError) and storage is not None:
        text = str(getattr(exc, "orig", None) or exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        if "readonly" in text.replace("-", "").replace(" ", "").lower():
            return StorageError(f"storage {shown}: the database is read-only ({first}); make the file and its "
                                "directory writable, or copy it to a path you can write")
        if storage.startswith("sqlite"):
            return StorageError(f"storage {shown}: SQLite failed ({first}); check the path and its permissions")
        return StorageError(describe_server_error(shown, make_url(storage), exc))
    if isinstance(exc, OSError):
        return StorageError(f"storage {shown}: {exc.strerror or exc} ({exc.filename}); choose a path you can write")
    return exc


def limit_threads(threads: int) -> None:
    """Give TensorFlow `threads` threads, so N workers share the cores instead of fighting."""
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialised in this process: keep its pools
        pass


def _optimize(study: Any, objective: Objective, target: int | None, timeout: float | None, callbacks: list[Any],
              lock: BudgetLock | None = None, max_bracket: int | None = None) -> None:
    """Run trials until the budget is spent, then drain: re-run the trials of workers
    that died, waiting (at most `budget.wait_limit_s()`) while any running trial
    might still turn out orphaned.

    Each trial starts under the study's `BudgetLock`, released as soon as the trial
    exists in the storage, so workers finishing at the same moment cannot both take
    the last trial of the budget. The heap alive before the first trial is frozen
    out of the garbage collector meanwhile (`frozen_heap`: the collect that ends
    each trial costs milliseconds instead of a third of a second).
    `max_bracket` caps the configurations one bracket takes (`pruner: brackets`):
    a worker's share of the budget, so one worker cannot take it all.

    Interrupted (KeyboardInterrupt: SIGINT, or SIGTERM under `interrupts()`), the
    trials this worker holds are failed with `error_type: interrupted` and
    re-queued for the next run, which trains them first; then the interrupt goes on.
    """
    with frozen_heap():
        try:
            _run_trials(study, objective, target, timeout, callbacks, lock, max_bracket)
        except KeyboardInterrupt:
            requeued = requeue_interrupted(study)
            if requeued:
                print(f"\ndescentkit: interrupted: trial(s) {', '.join(map(str, requeued))} failed "
                      f"(error_type {INTERRUPTED}) and re-queued; the next run trains them first", file=sys.stderr,
                      flush=True)
            raise


def _run_trials(study: Any, objective: Objective, target: int | None, timeout: float | None, callbacks: list[Any],
                lock: BudgetLock | None, max_bracket: int | None) -> None:
    # A failed trial is logged by Optuna at WARNING with its traceback; keep it to one line.
    logging.getLogger("optuna").setLevel(logging.ERROR)
    deadline = None if timeout is None else time.monotonic() + timeout
    brackets = make_brackets(objective.config)
    if target is None and not brackets:  # a timeout alone
        study.optimize(objective, timeout=timeout, catch=(Exception,), callbacks=callbacks)
        return
    lock = lock if lock is not None else BudgetLock(None, study.study_name)
    runner = None
    if brackets:
        from descentkit.tuner.brackets import BracketRunner

        runner = BracketRunner(study, objective, brackets, target, deadline, callbacks, lock, max_bracket)
        if target is None:
            runner.run()
            return

    def counted_then_run(trial: Any) -> float:
        lock.release()  # the trial is stored and counted: the next worker may check
        return objective(trial)

    wait = WaitLimit()
    while deadline is None or time.monotonic() < deadline:
        check_interrupted()
        with lock:
            recovered = recover(study)
            if recovered:
                print(f"descentkit: re-queued trial(s) {', '.join(map(str, recovered))} left running by a worker "
                      "that died", file=sys.stderr, flush=True)
            room = counted_trials(study) < target or has_waiting(study)
            if room and runner is None:
                study.optimize(counted_then_run, n_trials=1, catch=(Exception,), callbacks=callbacks)
                wait.reset()
                continue
        if room and runner.run():  # brackets (re-queued trials too): it takes its trials under the lock itself
            wait.reset()
            continue
        # Nothing left to start: wait while a running trial may yet be re-queued, within a bound.
        if not may_still_need_rerun(study) or wait.expired(study):
            return
        time.sleep(1.0)


_interrupt_depth = 0  # nested `interrupts()` blocks (the CLI's around run_sweep's) share budget.signals_seen


@contextlib.contextmanager
def interrupts(on_second: Callable[[], None] | None = None) -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt once (the trial in progress is failed
    and re-queued, see `_optimize`); a second one, anywhere inside the outermost such
    block, exits at once with status 130, after `on_second` (the parent of worker
    processes kills them). Main thread only; the previous handlers come back after."""
    global _interrupt_depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _interrupt_depth == 0:
        signals_seen.clear()

    def handler(signum: int, frame: Any) -> None:
        signals_seen.append(signum)
        if len(signals_seen) > 1:
            if on_second is not None:
                on_second()
            os.write(2, b"\ndescentkit: interrupted again: exiting now; a trial left running is re-queued "
                        b"on the next start\n")
            os._exit(130)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    _interrupt_depth += 1
    try:
        yield
    finally:
        _interrupt_depth -= 1
        for sig, old in previous.items():
            signal.signal(sig, old)
        if _interrupt_depth == 0:
            signals_seen.clear()


def _lock_location(storage: str | None, location: str) -> str:
    """What `BudgetLock` needs: the full URL for a server (its printed location has the
    password hidden), the file's path for an embedded store."""
    return storage if storage is not None and "://" in storage else location


def _worker_main(config_json: dict, name: str, storage: str | None, target: int | None,
                 timeout: float | None, threads: int, max_bracket: int | None, index: int) -> None:
    """One worker process of `run_sweep(workers=N)`.

    In a process group of its own: a Ctrl-C in the terminal reaches the parent only,
    which passes one SIGTERM on (a second Ctrl-C: SIGKILL), so each worker gets one
    interrupt, fails and re-queues its trials, and exits.
    """
    os.setpgrp()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with interrupts():
        try:
            limit_threads(threads)
            config = StudyConfig.model_validate(config_json)
            study, location = open_study(config, name, storage, worker_index=index)
            objective = Objective(config, load_dataset(config))
            _optimize(study, objective, target, timeout, callbacks=[],
                      lock=BudgetLock(_lock_location(storage, location), name), max_bracket=max_bracket)
        except KeyboardInterrupt:
            sys.exit(130)


def _run_workers(config: StudyConfig, name: str, storage: str | None, target: int | None,
                 timeout: float | None, workers: int, study: Any, bar: _Progress, tracker: Any = None) -> None:
    """Start `workers` processes on the study and follow their progress from the storage."""
    import multiprocessing

    import optuna

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
    # Each worker's brackets hold at most its share of the trials still to run: with
    # 8 trials and 2 workers, two brackets of 4 run side by side, not one of 8 and an idle worker.
    waiting = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))  # queued: still to run
    share = None if target is None else max(1, math.ceil((target - counted_trials(study) + waiting) / workers))
    args = (config.model_dump(mode="json"), name, storage, target, timeout, threads, share)
    processes = [context.Process(target=_worker_main, args=(*args, i + 1), daemon=False) for i in range(workers)]
    for process in processes:
        process.start()
    seen: set[int] = set()

    def kill_all() -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGKILL)

    with interrupts(on_second=kill_all):
        try:
            while True:
                alive = any([p.is_alive() for p in processes])  # a list: reap every dead worker
                for trial in study.get_trials(deepcopy=False):
                    if trial.number not in seen and trial.state.is_finished() and is_counted(trial, study):
                        seen.add(trial.number)
                        bar(study, trial)
                        if tracker is not None:  # MLflow is written by this process only
                            tracker(study, trial)
                if not alive:
                    break
                time.sleep(1.0)
        except BaseException:
            for process in processes:  # one SIGTERM each: every worker re-queues its trials and exits
                if process.is_alive():
                    process.terminate()
            raise
        finally:
            for process in processes:
                process.join()


def _say_resuming(study: Any, name: str, stored: int, target: int | None) -> None:
    """One line when a sweep resumes a study that holds trials: how many, how many to run."""
    import optuna

    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    origins = [t.user_attrs.get("retry_of", t.system_attrs.get("failed_trial")) for t in waiting]
    origins = [str(n) for n in origins if n is not None]
    if not stored and not origins:  # a new study (its first trial may be queued already)
        return
    todo = "until the timeout" if target is None else f"{max(0, target - stored)} to run"
    line = f"descentkit: resuming study {name!r}: {stored} trials stored, {todo}"
    if origins:
        line += f"; first the re-queued trial(s) of {', '.join(origins)}"
    print(line, file=sys.stderr, flush=True)


def sweep_dataset(config: StudyConfig, data: Dataset | tuple | None = None) -> Dataset:
    """The user's arrays, or the study's dataset; a mistake in either is a one-line ConfigError."""
    try:
        return as_dataset(data, name="data") if data is not None else load_dataset(config)
    except OptionError as exc:
        raise ConfigError(str(exc)) from None
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise ConfigError(f"dataset: {exc}") from None


def _stored_lr_range(storage: str | None, name: str) -> dict[str, Any] | None:
    """The range a `learning_rate: auto` study found before, if the study exists."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=open_storage(storage, name)[0])
    except KeyError:  # no such study yet: test afresh
        return None
    return study.user_attrs.get(LR_RANGE_ATTR)


def run_sweep(
    study: StudyConfig | str | Path,
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
        callbacks: extra Keras callbacks for every trial's `fit`.
        progress: show a progress bar.
        tracking: log the sweep to MLflow: one parent run, one child run per trial.
        tracking_uri: default MLFLOW_TRACKING_URI, else MLflow's default
            (sqlite:///mlflow.db in the working directory).
        experiment_name: the MLflow experiment (default: the study name).

    Running the same sweep again resumes the stored study and adds trials.
    """
    started = time.monotonic()  # the timeout counts the range test too
    config = study if isinstance(study, StudyConfig) else load_study(study)
    check_storage(storage)  # a storage mistake is one line now, not after the data and the model
    if seed is not None:
        config = config.model_copy(update={"seed": seed})
    if workers < 1:
        raise ConfigError(f"workers: must be at least 1, got {workers}")
    if workers > 1 and (data is not None or build_model is not None or callbacks):
        raise ConfigError("workers: several worker processes need a study file's dataset and model; "
                          "name them in the study (module:function) instead of passing data=/build_model=")
    name = study_name or config.name
    dataset = sweep_dataset(config, data)
    auto = wants_auto_learning_rate(config)
    # the checks first: a mistake is one line at once, not after a range test
    check_before_trials(with_learning_rate_range(config, 1e-3, 1e-1) if auto else config, dataset, build_model)
    if auto:
        try:
            config, lr_range = resolve_auto_learning_rate(config, dataset, build_model, _stored_lr_range(storage, name))
        except ValueError as exc:
            raise ConfigError(f"search_space.learning_rate: auto: {exc}") from None

    optuna_study, location = open_study(config, name, storage)
    if auto:
        stored = optuna_study.user_attrs.get(LR_RANGE_ATTR)
        if stored is None:
            optuna_study.set_user_attr(LR_RANGE_ATTR, lr_range)
        elif stored != lr_range:  # another worker tested first: search its range, as every worker must
            config = with_learning_rate_range(config, stored["low"], stored["high"])
    recovered = recover(optuna_study)
    if recovered:
        print(f"descentkit: re-queued trial(s) {', '.join(map(str, recovered))} left running by a worker that died",
              file=sys.stderr)
    lock = BudgetLock(_lock_location(storage, location), name)
    propose_first_trial(optuna_study, config, dataset, build_model,
                        optuna_study.user_attrs.get(LR_RANGE_ATTR) if auto else None, lock)
    if total_trials is not None:
        target: int | None = total_trials
    elif trials is not None or timeout is None:
        target = finished_trials(optuna_study) + (trials if trials is not None else config.trials)
    else:
        target = None
    already = finished_trials(optuna_study)
    _say_resuming(optuna_study, name, already, target)
    bar = _Progress(None if target is None else max(0, target - already), progress, config.objective.direction)
    tracker = None
    if tracking:
        from descentkit.tuner.tracking import SweepTracker  # MLflow and Keras: only when used

        tracker = SweepTracker(name, tracking_uri=tracking_uri, experiment_name=experiment_name, storage=storage)
    if timeout is not None:
        timeout = max(0.0, timeout - (time.monotonic() - started))
    try:
        if workers > 1:
            _run_workers(config, name, storage, target, timeout, workers, optuna_study, bar, tracker)
        else:
            objective = Objective(config, dataset, builder=build_model, callbacks=callbacks)
            with interrupts():
                _optimize(optuna_study, objective, target, timeout, callbacks=[bar, *([tracker] if tracker else [])],
                          lock=lock)
    finally:
        bar.close()
    result = SweepResult(optuna_study, location, summarize_study(optuna_study, location))
    if tracker is not None:
        tracker.finish(optuna_study)
        result.tracking, result.tracking_text = tracker.location(optuna_study), tracker.location_text(optuna_study)
    return result
