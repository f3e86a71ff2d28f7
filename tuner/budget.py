"""The trial budget shared by every worker of a study, and recovery of trials whose worker died.

A worker stops starting trials once the study holds its target number of
finished, running or queued trials, so N workers (processes or machines) on
one study run exactly the requested total between them. A trial left RUNNING
by a worker that died is failed with the reason recorded and its parameters
re-queued: on PostgreSQL and SQLite through Optuna's heartbeats (for every
trial a worker holds, the ask-and-tell trials of `pruner: brackets` included:
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

import fcntl
import os
import socket
import sys
import time
import warnings
import zlib
from typing import Any

from descentkit.tuner.storage import HEARTBEAT_GRACE_INTERVALS, heartbeat_interval_s

WORKER_ATTR = "worker"
ORPHANED_ATTR = "orphaned"
RETRY_OF_ATTR = "retry_of"
# A trial proposed by a range test, not the sampler (tuner/lr_find.py): a re-queued retry keeps it.
FIRST_TRIAL_ATTR = "first_trial"
# error_type of a trial whose worker was interrupted (SIGINT/SIGTERM); its parameters are re-queued.
INTERRUPTED = "interrupted"
# The signals received inside `sweep.interrupts()` (cleared when its outermost block ends).
# The handler raises KeyboardInterrupt once; a library that swallows it (Keras has bare
# `except:` clauses) cannot keep the worker going: `check_interrupted` raises it again at
# the next epoch end or trial boundary.
signals_seen: list[int] = []


def check_interrupted() -> None:
    """KeyboardInterrupt if a signal arrived and the sweep is still running."""
    if signals_seen:
        raise KeyboardInterrupt
# A waiting worker gives up after DESCENTKIT_WAIT_S (default: the heartbeat grace
# period and WAIT_MARGIN_INTERVALS heartbeat intervals more, at least MIN_WAIT_S).
WAIT_MARGIN_INTERVALS = 3
MIN_WAIT_S = 10.0


def wait_limit_s() -> float:
    """How long a worker with nothing left to start waits for others' running trials."""
    if os.environ.get("DESCENTKIT_WAIT_S"):
        return float(os.environ["DESCENTKIT_WAIT_S"])
    return max(MIN_WAIT_S, float(heartbeat_interval_s() * (HEARTBEAT_GRACE_INTERVALS + WAIT_MARGIN_INTERVALS)))


def _proc_stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name ([0] is the state), [] when unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _process_start_time(pid: int) -> str:
    """The kernel's start time of a process (clock ticks since boot), "" when unknown.

    With the pid it identifies a process uniquely, even after the pid is reused.
    """
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else ""


def worker_id(pid: int | None = None) -> str:
    """`host:pid:start` naming this process (the owner of the trials it runs)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_process_start_time(pid)}"


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
    fields = _proc_stat(pid)
    if fields and fields[0] in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    return not start or not fields or fields[19] == start


def _retried(trials: list[Any]) -> set[int]:
    """Numbers of trials that were re-queued: by descentkit (`retry_of`) or by Optuna's
    heartbeat callback (`failed_trial` in the re-run's system attributes)."""
    numbers = set()
    for t in trials:
        for origin in (t.user_attrs.get(RETRY_OF_ATTR), t.system_attrs.get("failed_trial")):
            if origin is not None:
                numbers.add(int(origin))
    return numbers


def counted(trials: list[Any]) -> list[Any]:
    """The trials that count against the budget: a failed trial that was re-queued
    (its worker died) does not, its re-run does."""
    retried = _retried(trials)
    return [
        t for t in trials
        if t.state.name != "FAIL" or (t.number not in retried and ORPHANED_ATTR not in t.user_attrs)
    ]


def counted_trials(study: Any) -> int:
    return len(counted(study.get_trials(deepcopy=False)))


def finished_trials(study: Any) -> int:
    return sum(t.state.is_finished() for t in counted(study.get_trials(deepcopy=False)))


def is_counted(trial: Any, study: Any) -> bool:
    return trial.number in {t.number for t in counted(study.get_trials(deepcopy=False))}


def recover_orphaned_trials(study: Any) -> list[int]:
    """Fail and re-queue RUNNING trials whose worker process on this host is dead.

    Returns the numbers of the trials recovered. Each keeps `orphaned` (why) in
    its user attributes; its re-run carries `retry_of` = the orphan's number.
    """
    import optuna

    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = trial.user_attrs.get(WORKER_ATTR)
        if owner is None or _alive(owner) is not False:
            continue
        reason = f"worker {owner} died while the trial was running"
        try:
            study._storage.set_trial_user_attr(trial._trial_id, ORPHANED_ATTR, reason)
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        except RuntimeError:  # another worker recovered it first
            continue
        carried = {FIRST_TRIAL_ATTR: trial.user_attrs[FIRST_TRIAL_ATTR]} if FIRST_TRIAL_ATTR in trial.user_attrs else {}
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF_ATTR: trial.number, **carried}, skip_if_exists=False)
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

    owner = owner or worker_id()
    State = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    requeued = []
    for trial in trials:
        if trial.user_attrs.get(WORKER_ATTR) != owner or trial.number in retried:
            continue
        if trial.state == State.RUNNING:
            try:
                study._storage.set_trial_user_attr(trial._trial_id, "error_type", INTERRUPTED)
                study._storage.set_trial_user_attr(trial._trial_id, "error_message",
                                                   "the sweep was interrupted (SIGINT or SIGTERM); re-queued")
                study._storage.set_trial_state_values(trial._trial_id, State.FAIL)
            except RuntimeError:  # finished meanwhile (or recovered by another worker)
                continue
        elif not (trial.state == State.FAIL and trial.user_attrs.get("error_type") == INTERRUPTED):
            continue
        carried = {FIRST_TRIAL_ATTR: trial.user_attrs[FIRST_TRIAL_ATTR]} if FIRST_TRIAL_ATTR in trial.user_attrs else {}
        study.enqueue_trial(dict(trial.params), user_attrs={RETRY_OF_ATTR: trial.number, **carried},
                            skip_if_exists=False)
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
        if heartbeats or _alive(trial.user_attrs.get(WORKER_ATTR, "")) is not None:
            return True
    return False


def has_waiting(study: Any) -> bool:
    import optuna

    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))


class BudgetLock:
    """A lock, shared by every worker of one study, held from the budget check until
    the worker's next trial exists in the storage.

    Without it two workers that finish a trial at the same moment both see one
    trial left and both start one (measured: 5 trials for `--total-trials 4` with
    3 workers on PostgreSQL). PostgreSQL: a session advisory lock; a journal file
    or SQLite: `flock` on a file beside it. Both are released by the operating
    system or the server when the worker dies. `storage` is the URL (password
    included) or the journal file's path; other storages, and None, run unlocked.
    """

    def __init__(self, storage: str | None, study_name: str) -> None:
        self._key = zlib.crc32(f"descentkit-budget:{study_name}".encode())
        self._path: str | None = None
        self._engine: Any = None
        self._held: Any = None
        if storage is None:  # unlocked: one worker on a store nobody else sees
            pass
        elif storage.startswith("sqlite:"):
            path = storage.split(":///", 1)[1] if ":///" in storage else ""
            if path not in ("", ":memory:"):  # in memory: one process, nothing to share
                self._path = self._lock_file(path)
        elif storage.startswith(("postgresql:", "postgresql+")):
            import sqlalchemy

            # AUTOCOMMIT: no transaction left idle while the lock is held, so a server's
            # idle_in_transaction_session_timeout cannot cut the session mid-trial.
            self._engine = sqlalchemy.create_engine(storage, poolclass=sqlalchemy.pool.NullPool,
                                                    isolation_level="AUTOCOMMIT")
        elif "://" not in storage:  # a journal file's path (storage.open_storage's location)
            self._path = self._lock_file(storage)

    def _lock_file(self, path: str) -> str:
        # realpath: the same file named relatively in one shell and absolutely in another
        return f"{os.path.realpath(path)}.budget-{self._key:08x}.lock"

    def acquire(self) -> None:
        if self._held is not None:
            return
        if self._path is not None:
            handle = open(self._path, "a")
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._held = handle
        elif self._engine is not None:
            import sqlalchemy

            connection = self._engine.connect()
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self._key})
            self._held = connection
        else:
            self._held = True

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None or held is True:
            return
        if self._path is not None:
            fcntl.flock(held, fcntl.LOCK_UN)
            held.close()
        else:
            import sqlalchemy

            try:
                held.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            except sqlalchemy.exc.SQLAlchemyError:
                pass  # the session is gone, and the lock with it: never fail the trial for that
            finally:
                held.close()  # closing the session releases it in any case

    def __enter__(self) -> BudgetLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
