"""Many workers on one study: simultaneous start, a worker killed mid-trial, nothing lost.

Real components only: worker processes started as a user would (`descentkit
sweep`), a real PostgreSQL server (conftest.py) and the embedded journal file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from descentkit.studies import builtin_study_path
from descentkit.tuner.storage import open_storage


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    """digits with a safe learning-rate range, nothing that prunes: every trial completes.

    A trial lasts several seconds (12 epochs at batch 16), so a poll sees it
    running mid-way on a slow machine too: with 3 short epochs a loaded CI machine
    finished all four trials between two polls.
    """
    data = yaml.safe_load(builtin_study_path("digits").read_text())
    data.update(name="workers", max_epochs=12, pruner="none", sampler="random", prune_on=["divergence"])
    data["search_space"]["learning_rate"] = {"type": "float", "low": 0.01, "high": 0.1, "log": True}
    data["search_space"]["batch_size"] = 16
    path = tmp_path / "workers.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _start(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """A worker as a user starts it. Its output goes to files, not pipes: a pipe nobody
    reads while the test polls would block the worker once it fills (64 KiB)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "DESCENTKIT_TRACKING": "false", **(env or {})}
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    index = len(list(logs.glob("*.out")))
    out, err = logs / f"worker{index}.out", logs / f"worker{index}.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "descentkit.tuner.cli", "sweep", *args, "--quiet"],
            cwd=tmp_path, env=full_env, stdout=stdout, stderr=stderr, text=True,
        )
    process.logs = (out, err)  # type: ignore[attr-defined]
    return process


def _output(process: subprocess.Popen) -> tuple[str, str]:
    out, err = process.logs  # type: ignore[attr-defined]
    return out.read_text(), err.read_text()


def _finish(process: subprocess.Popen, timeout: float = 600) -> tuple[str, str]:
    """Wait for a worker; its stdout and stderr. A worker that fails fails the test with its output."""
    process.wait(timeout=timeout)
    out, err = _output(process)
    assert process.returncode == 0, f"worker exited {process.returncode}:\n{err[-3000:]}\n{out[-1000:]}"
    return out, err


def _load(storage: str, name: str = "workers") -> optuna.Study:
    store, _ = open_storage(storage, name)
    return optuna.load_study(study_name=name, storage=store)


def _wait_for_running_trial(storage: str, worker: subprocess.Popen, timeout: float = 300) -> optuna.trial.FrozenTrial:
    """A trial that is mid-way: running, with at least one epoch reported.

    Fails at once, with the worker's output, if the worker exits first; on a
    timeout the message says what the polls saw, so a CI failure explains itself.
    """
    deadline = time.monotonic() + timeout
    store, study, seen, error = None, None, "nothing", "none"
    while time.monotonic() < deadline:
        try:  # one storage for every poll: each new one costs connections and a schema check
            store = store or open_storage(storage, "workers")[0]
            study = study or optuna.load_study(study_name="workers", storage=store)
            trials = study.get_trials()
        except Exception as exc:  # no study yet, or the worker is creating the tables this moment
            error, trials = f"{type(exc).__name__}: {str(exc)[:300]}", []
        if trials:
            seen = ", ".join(f"{t.number}:{t.state.name}:{len(t.intermediate_values)}" for t in trials)
        for trial in trials:
            if trial.state == optuna.trial.TrialState.RUNNING and trial.intermediate_values and "worker" in trial.user_attrs:
                return trial
        if worker.poll() is not None:
            out, err = _output(worker)
            raise AssertionError(f"the worker exited ({worker.returncode}) before a trial was seen mid-way "
                                 f"(trials seen: {seen}):\n{err[-3000:]}\n{out[-1000:]}")
        time.sleep(0.3)
    out, err = _output(worker)
    raise AssertionError(f"no trial reached its first epoch in {timeout:.0f} s; trials seen "
                         f"(number:state:epochs): {seen}; last poll error: {error}\n{err[-3000:]}\n{out[-1000:]}")


def _assert_budget_kept(study: optuna.Study, total: int, killed: optuna.trial.FrozenTrial | None = None) -> None:
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)), "duplicate trial numbers"
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.RUNNING not in states and optuna.trial.TrialState.WAITING not in states
    finished = [t for t in trials if not (killed is not None and t.number == killed.number)]
    assert len(finished) == total, f"expected exactly {total} finished trials besides the killed one, got {len(finished)}"
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in finished), [t.state for t in finished]
    if killed is not None:
        dead = study.trials[killed.number]
        assert dead.state == optuna.trial.TrialState.FAIL
        reruns = [t for t in finished if t.user_attrs.get("retry_of") == killed.number
                  or t.system_attrs.get("failed_trial") == killed.number]
        assert len(reruns) == 1, "the killed trial's parameters must be re-run exactly once"
        assert reruns[0].params == killed.params


def test_workers_started_at_once_on_an_empty_postgres_join_one_study(fresh_database, study_file, tmp_path):
    workers = [_start(tmp_path, str(study_file), "--storage", fresh_database, "--total-trials", "4") for _ in range(3)]
    for w in workers:
        out, err = _finish(w)
        assert "descentkit@127.0.0.1" in out and "password" not in out.lower()
    study = _load(fresh_database)
    _assert_budget_kept(study, total=4)
    assert optuna.get_all_study_names(open_storage(fresh_database, "workers")[0]) == ["workers"]


def test_worker_killed_mid_trial_on_postgres_is_rerun(fresh_database, study_file, tmp_path):
    env = {"DESCENTKIT_HEARTBEAT_S": "1"}  # stale after 3 s instead of 3 min
    first = _start(tmp_path, str(study_file), "--storage", fresh_database, "--total-trials", "4", env=env)
    killed = _wait_for_running_trial(fresh_database, first)
    completed_before = {t.number: t.value for t in _load(fresh_database).get_trials(states=(optuna.trial.TrialState.COMPLETE,))}
    first.send_signal(signal.SIGKILL)
    first.wait()

    second = _start(tmp_path, str(study_file), "--storage", fresh_database, "--total-trials", "4", env=env)
    _finish(second)
    study = _load(fresh_database)
    _assert_budget_kept(study, total=4, killed=killed)
    for number, value in completed_before.items():
        assert study.trials[number].value == value, "a completed result was lost"


def test_worker_killed_mid_trial_on_the_embedded_store_is_rerun(study_file, tmp_path):
    journal = str(tmp_path / "descentkit_studies" / "workers.journal")
    sweep = _start(tmp_path, str(study_file), "--workers", "2", "--trials", "4")
    killed = _wait_for_running_trial(journal, sweep)
    pid = int(killed.user_attrs["worker"].split(":")[1])
    os.kill(pid, signal.SIGKILL)
    _finish(sweep)
    study = _load(journal)
    _assert_budget_kept(study, total=4, killed=killed)
    assert "died" in study.trials[killed.number].user_attrs["orphaned"]


def test_trial_left_running_by_a_dead_process_is_requeued_on_next_start(study_file, tmp_path):
    journal = str(tmp_path / "descentkit_studies" / "workers.journal")
    first = _start(tmp_path, str(study_file), "--trials", "2")
    killed = _wait_for_running_trial(journal, first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    again = _start(tmp_path, str(study_file), "--total-trials", "2")
    out, err = _finish(again)
    assert f"re-queued trial(s) {killed.number}" in err
    _assert_budget_kept(_load(journal), total=2, killed=killed)


@pytest.mark.parametrize("kind", ["journal", "postgres"])
def test_budget_lock_excludes_a_second_worker_until_released(kind, tmp_path, request):
    """The lock that keeps workers finishing at once from both taking the last trial."""
    import threading

    from descentkit.tuner.budget import BudgetLock

    storage = str(tmp_path / "s.journal") if kind == "journal" else request.getfixturevalue("fresh_database")
    first, second = BudgetLock(storage, "workers"), BudgetLock(storage, "workers")
    other_study = BudgetLock(storage, "another-study")
    first.acquire()
    got = threading.Event()
    waiter = threading.Thread(target=lambda: (second.acquire(), got.set()), daemon=True)  # never hang the suite
    waiter.start()
    try:
        assert not got.wait(1.0), "a second worker took the lock while the first held it"
        with other_study:  # another study's workers are not held up
            pass
        first.release()
        assert got.wait(30), "the lock was not handed on after release"
    finally:
        first.release()
        waiter.join(30)
        second.release()
