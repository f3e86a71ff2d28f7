"""Many workers on one study: simultaneous start, a worker killed mid-trial, nothing lost.

Real components only: worker processes started as a user would (`descentkit
sweep`), a real PostgreSQL server (conftest.py) and the embedded journal file.
A worker "on another machine" runs in a UTS namespace of its own (`unshare --uts`,
another hostname): its process cannot be checked from here, so only its
heartbeats can tell that it died.
"""

from __future__ import annotations

import os
import shutil
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

    A trial lasts several seconds (8 epochs at batch 16), so a poll sees it
    running mid-way on a slow machine too: with 3 short epochs a loaded CI machine
    finished all four trials between two polls.
    """
    data = yaml.safe_load(builtin_study_path("digits").read_text())
    data.update(name="workers", max_epochs=8, pruner="none", sampler="random", prune_on=["divergence"])
    data["search_space"]["learning_rate"] = {"type": "float", "low": 0.01, "high": 0.1, "log": True}
    data["search_space"]["batch_size"] = 16
    path = tmp_path / "workers.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


OTHER_HOST = "dk-other-host"


@pytest.fixture
def fast_file(tmp_path: Path) -> Path:
    """digits cut to 1-epoch trials: for tests that need workers, not trials seen mid-way."""
    data = yaml.safe_load(builtin_study_path("digits").read_text())
    data.update(name="workers", max_epochs=1, pruner="none", sampler="random", prune_on=["divergence"],
                first_trial="sampler")
    data["search_space"]["learning_rate"] = {"type": "float", "low": 0.01, "high": 0.1, "log": True}
    data["search_space"]["batch_size"] = 64
    path = tmp_path / "workers-fast.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def brackets_file(tmp_path: Path) -> Path:
    """digits under the default `pruner: brackets` (eta 2, max_epochs 6: a bracket asks 4
    configurations, trains them 2 epochs, halves, trains on), short and safe trials."""
    data = yaml.safe_load(builtin_study_path("digits").read_text())
    data.update(name="workers", max_epochs=6, sampler="random", prune_on=["divergence"], first_trial="sampler",
                pruner={"name": "brackets", "options": {"reduction_factor": 2}})
    data["search_space"]["learning_rate"] = {"type": "float", "low": 0.01, "high": 0.1, "log": True}
    data["search_space"]["batch_size"] = 16
    path = tmp_path / "workers-brackets.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _other_host_prefix() -> list[str]:
    """The command prefix that runs a worker under another hostname (root and unshare needed)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true: the other-host tests need root and unshare (util-linux)", pytrace=False)
        pytest.skip("a worker on another host needs root and `unshare --uts`")
    return ["unshare", "--uts", "sh", "-c", f'hostname {OTHER_HOST} && exec "$@"', "worker"]


def _start(tmp_path: Path, *args: str, env: dict | None = None, other_host: bool = False) -> subprocess.Popen:
    """A worker as a user starts it. Its output goes to files, not pipes: a pipe nobody
    reads while the test polls would block the worker once it fills (64 KiB).
    `other_host`: in a UTS namespace with hostname OTHER_HOST (`exec`: the pid is the worker's)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "DESCENTKIT_TRACKING": "false", **(env or {})}
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    index = len(list(logs.glob("*.out")))
    out, err = logs / f"worker{index}.out", logs / f"worker{index}.err"
    prefix = _other_host_prefix() if other_host else []
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "descentkit.tuner.cli", "sweep", *args, "--quiet"],
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

    def mid_way(trials: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
        return next((t for t in trials if t.state == optuna.trial.TrialState.RUNNING
                     and t.intermediate_values and "worker" in t.user_attrs), None)

    return _wait_until(storage, worker, mid_way, "a trial was seen mid-way", timeout)


def _reruns(trials: list[optuna.trial.FrozenTrial], number: int) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if t.user_attrs.get("retry_of") == number or t.system_attrs.get("failed_trial") == number]


def _assert_budget_kept(study: optuna.Study, total: int, killed: optuna.trial.FrozenTrial | None = None,
                        states: tuple = (optuna.trial.TrialState.COMPLETE,), also_killed: list | None = None) -> dict:
    """Exactly `total` finished trials besides the killed ones, none RUNNING or WAITING, each
    killed trial FAIL and its parameters re-run exactly once. The figures, for the report."""
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)), "duplicate trial numbers"
    left = [t.state for t in trials]
    assert optuna.trial.TrialState.RUNNING not in left and optuna.trial.TrialState.WAITING not in left, left
    dead = [k.number for k in ([killed] if killed is not None else []) + list(also_killed or [])]
    finished = [t for t in trials if t.number not in dead]
    assert len(finished) == total, f"expected exactly {total} finished trials besides the killed ones, got {len(finished)}"
    assert all(t.state in states for t in finished), [t.state for t in finished]
    for original in ([killed] if killed is not None else []) + list(also_killed or []):
        assert study.trials[original.number].state == optuna.trial.TrialState.FAIL
        reruns = _reruns(trials, original.number)
        assert len(reruns) == 1, f"the killed trial {original.number}'s parameters must be re-run exactly once"
        # (a bracket's configuration asked but not yet trained has no parameters: its re-run samples them)
        stored = study.trials[original.number].params
        assert reruns[0].params == stored or not stored
        assert reruns[0].params == original.params or not original.params
    return {"finished": len(finished), "killed": dead, "running": 0, "duplicated": 0}


def test_workers_started_at_once_on_an_empty_postgres_join_one_study(fresh_database, fast_file, tmp_path):
    """Four workers race to create the tables and the study of an empty database."""
    workers = [_start(tmp_path, str(fast_file), "--storage", fresh_database, "--total-trials", "4") for _ in range(4)]
    for w in workers:
        out, err = _finish(w)
        assert "descentkit@127.0.0.1" in out and "password" not in out.lower()
    study = _load(fresh_database)
    figures = _assert_budget_kept(study, total=4)
    print(f"\nFIGURES 4 workers racing on an empty database: requested 4, finished {figures['finished']}, "
          "crashed 0, duplicated 0, running at the end 0")
    assert optuna.get_all_study_names(open_storage(fresh_database, "workers")[0]) == ["workers"]


def test_worker_killed_mid_trial_on_postgres_is_rerun(fresh_database, study_file, tmp_path):
    env = {"DESCENTKIT_HEARTBEAT_S": "1"}  # stale after 3 s instead of 3 min
    first = _start(tmp_path, str(study_file), "--storage", fresh_database, "--total-trials", "3", env=env)
    killed = _wait_for_running_trial(fresh_database, first)
    completed_before = {t.number: t.value for t in _load(fresh_database).get_trials(states=(optuna.trial.TrialState.COMPLETE,))}
    first.send_signal(signal.SIGKILL)
    first.wait()

    second = _start(tmp_path, str(study_file), "--storage", fresh_database, "--total-trials", "3", env=env)
    _finish(second)
    study = _load(fresh_database)
    _assert_budget_kept(study, total=3, killed=killed)
    for number, value in completed_before.items():
        assert study.trials[number].value == value, "a completed result was lost"


def _held_by(trials: list[optuna.trial.FrozenTrial], host: str) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if t.state == optuna.trial.TrialState.RUNNING
            and t.user_attrs.get("worker", "").startswith(f"{host}:")]


def _wait_until(storage: str, worker: subprocess.Popen, ready, what: str, timeout: float = 300):
    """Poll the study until `ready(trials)` returns something true; fail (with the worker's
    output) if the worker exits first or the time runs out."""
    deadline, store, study, seen, error = time.monotonic() + timeout, None, None, "nothing", "none"
    while time.monotonic() < deadline:
        try:  # one storage for every poll: each new one costs connections and a schema check
            store = store or open_storage(storage, "workers")[0]
            study = study or optuna.load_study(study_name="workers", storage=store)
            trials = study.get_trials()
        except Exception as exc:  # no study yet, or the worker is creating the tables this moment
            error, trials = f"{type(exc).__name__}: {str(exc)[:300]}", []
        if trials:
            seen = ", ".join(f"{t.number}:{t.state.name}:{len(t.intermediate_values)}" for t in trials)
        found = ready(trials)
        if found:
            return found
        if worker.poll() is not None:
            out, err = _output(worker)
            raise AssertionError(f"the worker exited ({worker.returncode}) before {what} (trials: {seen}):\n"
                                 f"{err[-3000:]}\n{out[-1000:]}")
        time.sleep(0.2)
    out, err = _output(worker)
    raise AssertionError(f"not {what} within {timeout:.0f} s; trials (number:state:epochs): {seen}; "
                         f"last poll error: {error}\n{err[-3000:]}\n{out[-1000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("pruner, moment", [("brackets", "mid-bracket"), ("none", "mid-trial")])
def test_worker_killed_on_another_host_is_recovered_by_heartbeats(pruner, moment, fresh_database, study_file,
                                                                  brackets_file, tmp_path):
    """A worker on another host (its own UTS namespace) is SIGKILLed while it holds trials;
    a worker here, already waiting for them, sees their heartbeats go stale, re-runs each
    killed configuration once, and exits: the exact total, none RUNNING, no wait for ever."""
    env = {"DESCENTKIT_HEARTBEAT_S": "1"}  # stale after 3 s instead of 3 min
    path = brackets_file if pruner == "brackets" else study_file
    total = "6" if pruner == "brackets" else "3"
    args = (str(path), "--storage", fresh_database, "--total-trials", total)
    other = _start(tmp_path, *args, env=env, other_host=True)
    if pruner == "brackets":  # the other host's bracket is asked before this worker starts
        _wait_until(fresh_database, other, lambda ts: len(_held_by(ts, OTHER_HOST)) >= 2, "a bracket was asked")
    here = _start(tmp_path, *args, env=env)

    def at_the_moment(trials):
        held = _held_by(trials, OTHER_HOST)
        trained = [t for t in held if t.intermediate_values]
        if not trained:
            return None
        if moment == "mid-bracket":  # configurations held between rungs: trained some, waiting for peers
            return held if len(held) >= 2 else None
        return held
    killed = _wait_until(fresh_database, other, at_the_moment, f"the other host's worker was {moment}")
    assert all(t.user_attrs["worker"].startswith(f"{OTHER_HOST}:") for t in killed)
    other.send_signal(signal.SIGKILL)
    killed_at = time.time()
    other.wait()

    _finish(here, timeout=400)
    ended = time.time()
    study = _load(fresh_database)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    # Trials the other worker finished on its own between the poll and the kill stay as they were.
    still = [k for k in killed if study.trials[k.number].state == optuna.trial.TrialState.FAIL]
    assert still, "no trial was left running by the killed worker"
    assert any(study.trials[k.number].params for k in still), "no killed configuration had been trained"
    table = "\n".join(f"  {t.number} {t.state.name} {t.user_attrs.get('worker')} retry_of="
                      f"{t.user_attrs.get('retry_of', t.system_attrs.get('failed_trial'))} epochs={len(t.intermediate_values)}"
                      for t in study.trials)
    print(f"\ntrials:\n{table}")
    figures = _assert_budget_kept(study, total=int(total), states=states, also_killed=still)
    recovered = max(study.trials[k.number].datetime_complete.timestamp() for k in still) - killed_at
    assert recovered < 60, f"the killed worker's trials were failed {recovered:.0f} s after the kill"
    print(f"\nFIGURES other-host {pruner} {moment}: requested {total}, finished {figures['finished']}, "
          f"killed {figures['killed']} (re-run once each), lost 0, duplicated 0, running at the end 0, "
          f"recovered {recovered:.1f} s after the kill, survivor done {ended - killed_at:.0f} s after it")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_worker_with_nothing_to_run_stops_waiting_after_the_stated_limit(fresh_database, study_file, tmp_path):
    """A RUNNING trial that never sent a heartbeat, owned by a worker on another host (as a
    worker that died before its first beat leaves it): nobody here can tell whether it is
    alive, so the worker waits DESCENTKIT_WAIT_S, then exits 0 with one line saying so."""
    store, _ = open_storage(fresh_database, "workers")
    study = optuna.create_study(study_name="workers", storage=store, direction="maximize")
    stuck = study.ask()  # outside study.optimize: no heartbeat
    stuck.set_user_attr("worker", f"{OTHER_HOST}:4242:1")
    started = time.monotonic()
    worker = _start(tmp_path, str(study_file), "--storage", fresh_database, "--total-trials", "1",
                    env={"DESCENTKIT_HEARTBEAT_S": "1", "DESCENTKIT_WAIT_S": "4"})
    out, err = _finish(worker, timeout=120)
    elapsed = time.monotonic() - started
    lines = [line for line in err.splitlines() if "stopped waiting" in line]
    assert lines == [f"descentkit: stopped waiting after 4 s (DESCENTKIT_WAIT_S) for trial(s) {stuck.number} "
                     "running on other workers; their workers finish them, and a trial left by a worker that "
                     "dies later is re-run on the next start"], err[-2000:]
    assert elapsed < 90, f"the worker took {elapsed:.0f} s to give up a 4 s wait"
    assert _load(fresh_database).trials[stuck.number].state == optuna.trial.TrialState.RUNNING


def test_worker_killed_mid_trial_on_the_embedded_store_is_rerun(study_file, tmp_path):
    journal = str(tmp_path / "descentkit_studies" / "workers.journal")
    sweep = _start(tmp_path, str(study_file), "--workers", "2", "--trials", "3")
    killed = _wait_for_running_trial(journal, sweep)
    pid = int(killed.user_attrs["worker"].split(":")[1])
    os.kill(pid, signal.SIGKILL)
    _finish(sweep)
    study = _load(journal)
    _assert_budget_kept(study, total=3, killed=killed)
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

    from descentkit.tuner import StorageSpec

    storage = str(tmp_path / "s.journal") if kind == "journal" else request.getfixturevalue("fresh_database")
    first, second = StorageSpec(storage, "workers").lock(), StorageSpec(storage, "workers").lock()
    other_study = StorageSpec(storage, "another-study").lock()
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
