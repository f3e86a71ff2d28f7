"""Trials whose worker died or was interrupted: found, failed with the reason recorded, re-queued.

A trial left RUNNING by a worker that died is failed and its parameters
re-queued: on PostgreSQL and SQLite through Optuna's heartbeats (for every trial
a worker holds, the ask-and-tell trials of `pruner: brackets` included:
`Heartbeats`), on the embedded journal file by checking whether the worker
process that owns the trial is still alive.

A worker with no trial left to start waits for the trials other workers are
running, because any of them may yet be re-queued; it re-checks for stale ones
every second and gives up after `wait_limit_s()` with one line (`WaitLimit`).

An interrupted worker (SIGINT, SIGTERM) fails the trials it holds with
`error_type: interrupted` and re-queues their parameters (`requeue_interrupted`),
so the next run trains them first and the interrupted ones count as nothing.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import warnings
from typing import Any

from descentkit.tuner import _record
from descentkit.tuner.storage import HEARTBEAT_GRACE_INTERVALS, heartbeat_interval_s

# A waiting worker gives up after DESCENTKIT_WAIT_S (default: the heartbeat grace
# period and WAIT_MARGIN_INTERVALS heartbeat intervals more, at least MIN_WAIT_S).
WAIT_MARGIN_INTERVALS = 3
MIN_WAIT_S = 10.0


def wait_limit_s() -> float:
    """How long a worker with nothing left to start waits for others' running trials."""
    if os.environ.get("DESCENTKIT_WAIT_S"):
        return float(os.environ["DESCENTKIT_WAIT_S"])
    return max(MIN_WAIT_S, float(heartbeat_interval_s() * (HEARTBEAT_GRACE_INTERVALS + WAIT_MARGIN_INTERVALS)))


def _alive(worker: str) -> bool | None:
    """Whether the worker that wrote `worker` is alive; None when it ran on another host."""
    host, _, rest = worker.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _record.process_fields(pid)
    if fields and fields[0] in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    return not start or not fields or fields[19] == start


def _retried(trials: list[Any]) -> set[int]:
    """Numbers of trials that were re-queued (by descentkit or by Optuna's heartbeat callback)."""
    return {origin for t in trials if (origin := _record.retry_origin(t)) is not None}


def recover_orphaned_trials(study: Any) -> list[int]:
    """Fail and re-queue RUNNING trials whose worker process on this host is dead.

    Returns the numbers of the trials recovered. Each keeps `orphaned` (why) in
    its user attributes; its re-run carries `retry_of` = the orphan's number.
    """
    import optuna

    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = _record.worker(trial)
        if owner is None or _alive(owner) is not False:
            continue
        reason = f"worker {owner} died while the trial was running"
        try:
            study._storage.set_trial_user_attr(trial._trial_id, _record.ORPHANED, reason)
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        except RuntimeError:  # another worker recovered it first
            continue
        study.enqueue_trial(trial.params, user_attrs=_record.carried_on_retry(trial), skip_if_exists=False)
        recovered.append(trial.number)
    return recovered


def _heartbeats_enabled(study: Any) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(study._storage)


def recover(study: Any) -> list[int]:
    """Recover trials whose worker died: heartbeat-stale ones (RDB storages with
    heartbeats: Optuna fails them and its RetryHeartbeatStaleTrialCallback re-queues
    them) and orphans of dead processes on this host (any storage). Returns the
    numbers of the trials recovered."""
    import optuna

    stale: list[int] = []
    if _heartbeats_enabled(study):
        State = optuna.trial.TrialState
        running = {t.number for t in study.get_trials(deepcopy=False, states=(State.RUNNING,))}
        with warnings.catch_warnings():  # "experimental" since Optuna 2.9: once per trial is noise
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        if running:
            retried = _retried(study.get_trials(deepcopy=False))
            stale = sorted(running & retried)
    return stale + recover_orphaned_trials(study)


class Heartbeats:
    """Optuna's heartbeat thread (`optuna.storages._heartbeat`) for each trial a worker
    holds outside `study.optimize`, which starts one only for the trial it runs.

    Ask-and-tell trials (`pruner: brackets` asks a whole bracket at once, and keeps
    its survivors RUNNING between rungs) need one each, or a worker that dies leaves
    them RUNNING for ever: Optuna's stale check skips a trial that never beat.
    A storage without heartbeats (the journal file) gets Optuna's null thread.
    """

    def __init__(self, study: Any) -> None:
        self._storage = study._storage
        self._threads: dict[int, Any] = {}

    def start(self, trial: Any) -> None:
        from optuna.storages._heartbeat import get_heartbeat_thread

        if trial._trial_id not in self._threads:
            thread = get_heartbeat_thread(trial._trial_id, self._storage)
            thread.start()
            self._threads[trial._trial_id] = thread

    def stop(self, trial: Any) -> None:
        thread = self._threads.pop(trial._trial_id, None)
        if thread is not None:
            thread.join()

    def stop_all(self) -> None:
        for trial_id in list(self._threads):
            self._threads.pop(trial_id).join()

    def __enter__(self) -> Heartbeats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def requeue_interrupted(study: Any, owner: str | None = None) -> list[int]:
    """Fail the trials this worker holds with `error_type: interrupted` and re-queue them.

    Called when a sweep is interrupted (SIGINT, SIGTERM): the worker's RUNNING
    trials (a bracket may hold several), and the one `study.optimize` has just
    told FAIL with that error, get a WAITING copy of their parameters
    (`retry_of` = their number), which the next run trains first. The failed
    ones count against no budget (`counted`). Returns their numbers.
    """
    import optuna

    owner = owner or _record.worker_id()
    State = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    requeued = []
    for trial in trials:
        if _record.worker(trial) != owner or trial.number in retried:
            continue
        if trial.state == State.RUNNING:
            try:
                study._storage.set_trial_user_attr(trial._trial_id, _record.ERROR_TYPE, _record.INTERRUPTED)
                study._storage.set_trial_user_attr(trial._trial_id, _record.ERROR_MESSAGE,
                                                   _record.INTERRUPTED_MESSAGE)
                study._storage.set_trial_state_values(trial._trial_id, State.FAIL)
            except RuntimeError:  # finished meanwhile (or recovered by another worker)
                continue
        elif not (trial.state == State.FAIL and _record.error_type(trial) == _record.INTERRUPTED):
            continue
        study.enqueue_trial(dict(trial.params), user_attrs=_record.carried_on_retry(trial), skip_if_exists=False)
        requeued.append(trial.number)
    return requeued


class WaitLimit:
    """The bounded wait of a worker with no trial left to start (see the module docstring).

    `expired(study)` is False while the worker should go on waiting; after the
    limit it prints one line naming the trials still running and returns True.
    The clock restarts whenever the worker had a trial to run (`reset`).
    """

    def __init__(self, limit_s: float | None = None) -> None:
        self.limit_s = wait_limit_s() if limit_s is None else limit_s
        self._since: float | None = None

    def reset(self) -> None:
        self._since = None

    def expired(self, study: Any) -> bool:
        import optuna

        now = time.monotonic()
        if self._since is None:
            self._since = now
            return False
        if now - self._since < self.limit_s:
            return False
        running = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
        print(f"descentkit: stopped waiting after {self.limit_s:.0f} s (DESCENTKIT_WAIT_S) for trial(s) "
              f"{', '.join(map(str, running))} running on other workers; their workers finish them, and a trial "
              "left by a worker that dies later is re-run on the next start", file=sys.stderr, flush=True)
        return True


def may_still_need_rerun(study: Any) -> bool:
    """Whether a RUNNING trial could yet turn out orphaned: it has a heartbeat, or its
    worker is a process on this host. (A live worker on another machine writing to a
    journal file finishes its own trial; nobody here can tell if it died.)"""
    import optuna

    heartbeats = _heartbeats_enabled(study)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if heartbeats or _alive(_record.worker(trial) or "") is not None:
            return True
    return False
