"""A sweep in MLflow: one parent per study, a nested child per trial, filterable
diagnosis tags, idempotent re-logging, and a tracking server that may be down."""

from __future__ import annotations

import json
import math
import shutil
import time

import pytest
from mlflow import MlflowClient

from descentkit.tuner import SweepTracker, load_stored_study, relog_study


def skip_or_fail(reason: str) -> None:
    """Skip on a developer's machine; fail under CI, where the component must be there."""
    import os

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _runs(client: MlflowClient, study_name: str, filter_string: str = "", **kwargs):
    experiment = client.get_experiment_by_name(study_name)
    assert experiment is not None, f"no experiment {study_name!r}"
    return client.search_runs([experiment.experiment_id], filter_string=filter_string, max_results=1000, **kwargs)


def _finished(study):
    return sorted(t.number for t in study.trials if t.state.is_finished())


@pytest.fixture(scope="module")
def logged_sweep(migrated_db, small_sweep, tmp_path_factory):
    """An 8-trial small real sweep logged by a SweepTracker to a fresh SQLite store: (study, tracker, uri)."""
    root = tmp_path_factory.mktemp("logged-sweep")
    shutil.copy(migrated_db, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # MLflow's default artifact root is ./mlruns
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        study = small_sweep.make_study()
        tracker = SweepTracker(tracking_uri=uri, storage="postgresql+psycopg2://bob:s3cret@db.example/optuna")
        small_sweep.run(study, 8, callbacks=[tracker])
        tracker.finish(study)
        yield study, tracker, uri


def test_one_parent_and_one_nested_child_per_trial(logged_sweep):
    study, tracker, tracking_uri = logged_sweep
    client = MlflowClient(tracking_uri)

    parents = _runs(client, "small-sweep", "tags.`descentkit.role` = 'parent'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags["descentkit.study"] == "small-sweep" and parent.info.status == "FINISHED"
    children = _runs(client, "small-sweep", "tags.`descentkit.role` = 'trial'")
    assert sorted(int(r.data.tags["descentkit.trial"]) for r in children) == _finished(study)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    assert {r.info.run_name for r in children} == {f"trial-{n}" for n in _finished(study)}

    states = {t.number: t.state.name for t in study.trials}
    assert set(states.values()) == {"COMPLETE", "PRUNED", "FAIL"}, "the small sweep should show every outcome"
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    for run in children:
        number = int(run.data.tags["descentkit.trial"])
        trial = study.trials[number]
        assert run.data.tags["descentkit.state"] == states[number]
        assert run.info.status == status[states[number]]
        assert run.data.params["learning_rate"] == str(trial.params["learning_rate"])
        assert run.data.params["schedule"] == "constant", "fixed search-space values are params too"
        assert math.isclose(run.data.metrics["param/learning_rate"], trial.params["learning_rate"])
        if states[number] == "COMPLETE":
            history = client.get_metric_history(run.info.run_id, "val_accuracy")
            assert [m.step for m in history] == [1, 2, 3], "step = the epoch as Keras counts it"
            assert math.isclose(run.data.metrics["trial/objective"], trial.value)
        if states[number] == "FAIL":
            assert run.data.tags["descentkit.error_type"] == "ValueError"

    assert parent.data.params["objective_metric"] == "val_accuracy"
    assert "s3cret" not in json.dumps({**parent.data.tags, **parent.data.params})
    assert "bob:***@db.example" in parent.data.tags["descentkit.storage"]
    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    parent = client.get_run(parent.info.run_id)
    assert math.isclose(parent.data.metrics["best_value"], best.value)
    assert parent.data.tags["descentkit.best_trial"] == str(best.number)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)} | {
        a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"pathology.json", "pathology.txt", "summary.txt"} <= artifacts
    assert {f"plots/{n}.png" for n in ("optimization_history", "intermediate_values", "param_importances",
                                       "parallel_coordinates", "learning_rate_vs_objective", "pathology_map")} <= artifacts
    assert tracker.not_logged == []


def test_the_ui_gets_a_training_experiment_an_optimization_history_and_gradient_health(logged_sweep):
    study, _, tracking_uri = logged_sweep
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("small-sweep")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development", "else the UI opens on GenAI traces"

    parent = _runs(client, "small-sweep", "tags.`descentkit.role` = 'parent'")[0]
    complete = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.number)
    values = client.get_metric_history(parent.info.run_id, "trial_objective")
    assert [(m.step, m.value) for m in values] == [(t.number, pytest.approx(t.value)) for t in complete]
    best = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "best_value")}
    for t in complete:
        assert best[t.number] == pytest.approx(max(c.value for c in complete if c.number <= t.number))
    assert not [k for k in parent.data.metrics if k.startswith("best.")], "no flat best-param lines in the charts"

    children = {int(r.data.tags["descentkit.trial"]): r for r in _runs(client, "small-sweep", "tags.`descentkit.role` = 'trial'")}
    healthy = children[complete[-1].number]
    for key in ("grad_norm/median", "grad_norm/max", "grad_norm/first_last_ratio", "dead_fraction/max"):
        assert [m.step for m in client.get_metric_history(healthy.info.run_id, key)] == [1, 2, 3], key
    sampled = client.get_metric_history(healthy.info.run_id, "update_ratio/max")  # at most every 8th step
    assert sampled and {m.step for m in sampled} <= {1, 2, 3}
    one_value = {k for k in healthy.data.metrics if client.get_metric_history(healthy.info.run_id, k)[0].step == 0}
    assert one_value and all(k.startswith(("trial/", "param/")) for k in one_value), "apart from the curves"
    diverged = [n for n, r in children.items() if r.data.tags.get("descentkit.prune_reason") == "divergence"]
    for number, run in children.items():
        has_figure = "diagnostics.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
        assert has_figure == (number in diverged or bool(study.trials[number].user_attrs.get("symptoms"))), number


def test_filters_find_diverged_trials_and_learning_rate_ranges(logged_sweep):
    study, _, tracking_uri = logged_sweep
    client = MlflowClient(tracking_uri)

    diverged = _runs(client, "small-sweep", 'tags."descentkit.symptom.divergence" = "critical"')
    expected = {t.number for t in study.trials if t.user_attrs.get("prune_reason") == "divergence"}
    assert expected, "the small sweep should have diverging trials"
    assert {int(r.data.tags["descentkit.trial"]) for r in diverged} == expected
    assert all("divergence" in r.data.tags["descentkit.symptoms"].split(",") for r in diverged)
    assert all(r.data.tags["descentkit.state"] == "PRUNED" for r in diverged), "the parent is no trial"
    by_reason = _runs(client, "small-sweep", 'tags."descentkit.prune_reason" = "divergence"')
    assert {r.info.run_id for r in by_reason} == {r.info.run_id for r in diverged}
    artifact = client.download_artifacts(diverged[0].info.run_id, "findings.json")
    assert json.loads(open(artifact).read())[0]["symptom"] == "divergence"

    fast = _runs(client, "small-sweep", 'metrics."param/learning_rate" > 0.1')
    assert {int(r.data.tags["descentkit.trial"]) for r in fast} == {
        t.number for t in study.trials if t.state.is_finished() and t.params.get("learning_rate", 0) > 0.1}

    best = _runs(client, "small-sweep", 'tags."descentkit.state" = "COMPLETE" and metrics."param/learning_rate" > 0.01',
                 order_by=["metrics.`trial/objective` DESC"])[0]
    complete = [t for t in study.trials if t.state.name == "COMPLETE" and t.params["learning_rate"] > 0.01]
    assert int(best.data.tags["descentkit.trial"]) == max(complete, key=lambda t: t.value).number


def test_relog_is_idempotent(tracking_uri, swept_study, small_sweep, no_study_plots):
    study = swept_study
    first = relog_study(study, tracking_uri)
    assert first == _finished(study) and len(first) == 8
    assert relog_study(study, tracking_uri) == [], "a second re-log must add nothing"
    small_sweep.run(study, 2)  # the study grows; a re-log adds only the new trials
    assert relog_study(study, tracking_uri) == [8, 9]
    client = MlflowClient(tracking_uri)
    assert len(_runs(client, "small-sweep", "tags.`descentkit.role` = 'parent'")) == 1
    children = _runs(client, "small-sweep", "tags.`descentkit.role` = 'trial'")
    numbers = [int(r.data.tags["descentkit.trial"]) for r in children]
    assert sorted(numbers) == _finished(study) and len(numbers) == len(set(numbers))


def test_unreachable_server_costs_no_trial_and_relog_catches_up(tracking_uri, dead_tracking_uri, small_sweep,
                                                                 tmp_path, capsys, no_study_plots):
    dead = dead_tracking_uri
    storage = str(tmp_path / "small-sweep.journal")
    study = small_sweep.make_study(storage=storage)
    tracker = SweepTracker(tracking_uri=dead, storage=storage)
    started = time.monotonic()
    small_sweep.run(study, 5, callbacks=[tracker])
    tracker.finish(study)
    elapsed = time.monotonic() - started

    assert len(study.trials) == 5 and all(t.state.is_finished() for t in study.trials)
    assert tracker.not_logged == _finished(study)
    err = capsys.readouterr().err
    last = [line for line in err.splitlines() if "not logged" in line][-1]
    assert f"trial(s) {', '.join(map(str, _finished(study)))} of study 'small-sweep' not logged" in last
    assert f"descentkit mlflow-relog small-sweep --storage {storage} --tracking-uri {dead}" in last
    assert elapsed < 20, f"a dead server stalled the sweep for {elapsed:.0f} s"

    # The server is back (here: another tracking URI): the command logs every trial once.
    assert relog_study(load_stored_study("small-sweep", storage), tracking_uri, storage=storage) == _finished(study)
    assert relog_study(load_stored_study("small-sweep", storage), tracking_uri, storage=storage) == []


def _rest(server: str, endpoint: str, body: dict | None = None, **query) -> dict:
    """One call of MLflow's REST API, as the UI makes it (GET with a query, or POST with JSON)."""
    import urllib.parse
    import urllib.request

    url = f"{server}/api/2.0/mlflow/{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server_sweep(mlflow_server, small_sweep, tmp_path_factory):
    """A 6-trial small sweep logged to the module's real `mlflow server`: (study, tracker)."""
    from descentkit.tuner import _plots

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("server-sweep"))
        # One plot is enough to prove artifacts reach the server's store (all six are checked on SQLite).
        patch.setattr(_plots, "STUDY_PLOTS", {"pathology_map": _plots.plot_pathology_map})
        study = small_sweep.make_study("server-sweep")
        tracker = SweepTracker(tracking_uri=mlflow_server)
        small_sweep.run(study, 6, callbacks=[tracker])
        tracker.finish(study)
    return study, tracker


def test_a_sweep_on_a_real_mlflow_server_reads_in_the_ui(mlflow_server, server_sweep):
    """What MLflow's UI fetches, through the REST API of a real `mlflow server`: the experiment's
    kind, one parent with a child per trial, the children's curves and a pathological child's figure."""
    import urllib.request

    study, tracker = server_sweep
    assert tracker.not_logged == []

    experiment = _rest(mlflow_server, "experiments/get-by-name", experiment_name="server-sweep")["experiment"]
    tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
    assert tags["mlflow.experimentKind"] == "custom_model_development", "the UI opens on runs, not GenAI traces"

    def search(filter_string: str) -> list[dict]:
        body = {"experiment_ids": [experiment["experiment_id"]], "filter": filter_string, "max_results": 1000}
        runs = _rest(mlflow_server, "runs/search", body).get("runs", [])
        return [{**run, "tags": {t["key"]: t["value"] for t in run["data"].get("tags", [])}} for run in runs]

    parents = search("tags.`descentkit.role` = 'parent'")
    assert len(parents) == 1 and parents[0]["info"]["status"] == "FINISHED"
    parent_id = parents[0]["info"]["run_id"]
    children = search("tags.`descentkit.role` = 'trial'")
    assert sorted(int(r["tags"]["descentkit.trial"]) for r in children) == _finished(study)
    assert {r["tags"]["mlflow.parentRunId"] for r in children} == {parent_id}, "nested under the one parent"
    history = _rest(mlflow_server, "metrics/get-history", run_id=parent_id, metric_key="best_value")["metrics"]
    assert len(history) >= 2, "the parent charts the best value against trial number"

    states = {t.number: t.state.name for t in study.trials}
    for run in children:
        run_id, number = run["info"]["run_id"], int(run["tags"]["descentkit.trial"])
        if states[number] == "COMPLETE":
            for key in ("val_accuracy", "grad_norm/median"):
                curve = _rest(mlflow_server, "metrics/get-history", run_id=run_id, metric_key=key)["metrics"]
                assert sorted(int(m.get("step", 0)) for m in curve) == [1, 2, 3], key
        if run["tags"].get("descentkit.symptom.divergence") == "critical":
            losses = _rest(mlflow_server, "metrics/get-history", run_id=run_id, metric_key="loss")["metrics"]
            assert math.isnan(float(losses[-1]["value"])), "NaN losses survive the REST round trip"
            with urllib.request.urlopen(f"{mlflow_server}/get-artifact?path=diagnostics.png&run_uuid={run_id}",
                                        timeout=30) as response:  # the UI's artifact view fetches this
                assert response.read(8) == b"\x89PNG\r\n\x1a\n"
    assert any(r["tags"].get("descentkit.symptom.divergence") for r in children), "the small sweep diverges"
    line = tracker.location_text(study)
    assert f"to {mlflow_server}, experiment 'server-sweep', parent run {parent_id}" in line
    assert f"open {mlflow_server}/#/experiments/{experiment['experiment_id']}/runs/{parent_id}" in line
    assert relog_study(study, mlflow_server) == []


def test_the_runs_page_renders_the_sweep_in_a_browser(mlflow_server, server_sweep, tmp_path):
    """Headless Chromium on MLflow's UI: the experiment opens on its runs (the parent and
    its trials), not on the GenAI traces page an untagged experiment gets."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        skip_or_fail("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    study, tracker = server_sweep
    page = f"{mlflow_server}/#/experiments/{tracker.location(study)['experiment_id']}/runs"
    shown = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
                            "--window-size=1600,1000", "--virtual-time-budget=20000", "--dump-dom", page],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "sweep-server-sweep" in shown.stdout, "the parent run is listed"
    assert "Detect Issues in Your Traces" not in shown.stdout and "No data available" not in shown.stdout


@pytest.mark.slow
def test_real_sweep_trials_relog_with_their_history(tracking_uri, tmp_path, no_study_plots):
    import numpy as np

    from descentkit.tuner import StudyConfig, run_sweep

    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")

    def build(params):
        import keras

        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                                 keras.layers.Dense(1, activation="sigmoid")])

    config = StudyConfig(name="real-sweep", max_epochs=1, trials=2, pruner="none",
                         objective={"metric": "val_accuracy", "direction": "maximize"},
                         search_space={"learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
                                       "batch_size": 32})
    result = run_sweep(config, data=(x[:120], y[:120], x[120:], y[120:]), build_model=build, trials=2,
                       storage=str(tmp_path / "real.journal"), progress=False, tracking_uri=tracking_uri)
    client = MlflowClient(tracking_uri)
    assert len(_runs(client, "real-sweep", "tags.`descentkit.role` = 'trial'")) == 2, "the sweep logs as it goes"
    # The MLflow side was lost (say, a server restored from an old backup): relog brings it back.
    for run in _runs(client, "real-sweep", "tags.`descentkit.role` = 'trial'"):
        client.delete_run(run.info.run_id)
    assert relog_study(result.study, tracking_uri) == [0, 1]
    assert relog_study(result.study, tracking_uri) == [], "relogging twice adds nothing"
    children = _runs(client, "real-sweep", "tags.`descentkit.role` = 'trial'")
    assert len(children) == 2
    for run in children:
        assert run.data.params["batch_size"] == "32"
        assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 1
        assert run.data.metrics["trial/epochs_trained"] == 1
    # the first trial was the range test's choice, and says so; the sampler proposed the second
    proposed = {run.data.tags["descentkit.trial"]: run.data.tags.get("descentkit.first_trial") for run in children}
    assert proposed == {"0": "range_test", "1": None}


def _cli(*args: str, cwd, env: dict, timeout: float = 300, background: bool = False):
    import os
    import subprocess
    import sys

    full = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    command = [sys.executable, "-m", "descentkit.tuner.cli", *args]
    if background:
        err = open(cwd / "sweep.err", "w")
        return subprocess.Popen(command, cwd=cwd, env=full, stdout=subprocess.DEVNULL, stderr=err, text=True)
    return subprocess.run(command, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_server_killed_mid_sweep_and_restarted_then_relog_twice(restartable_mlflow_server, tmp_path):
    """SIGKILL the tracking server while a real sweep logs to it, start it again on the same
    port, then `descentkit mlflow-relog` twice: one child run per finished trial, no duplicate."""
    import optuna
    import yaml

    from descentkit.studies import builtin_study_path
    from descentkit.tuner.storage import open_storage

    server = restartable_mlflow_server
    data = yaml.safe_load(builtin_study_path("digits").read_text())
    data.update(name="outage", max_epochs=1, pruner="none", sampler="random", first_trial="sampler",
                prune_on=["divergence"])
    data["search_space"]["batch_size"] = 64
    data["search_space"]["learning_rate"] = {"type": "float", "low": 0.01, "high": 0.1, "log": True}
    (tmp_path / "outage.yaml").write_text(yaml.safe_dump(data))
    env = {"MLFLOW_TRACKING_URI": server.url, "DESCENTKIT_TRACKING": "true"}
    journal = tmp_path / "descentkit_studies" / "outage.journal"
    client = MlflowClient(server.url)

    def children():
        experiment = client.get_experiment_by_name("outage")
        if experiment is None:
            return []
        return client.search_runs([experiment.experiment_id], "tags.`descentkit.role` = 'trial'", max_results=1000)

    def finished():
        if not journal.exists():
            return []
        study = optuna.load_study(study_name="outage", storage=open_storage(str(journal), "outage")[0])
        return sorted(t.number for t in study.get_trials() if t.state.is_finished())

    sweep = _cli("sweep", "outage.yaml", "--trials", "8", "--quiet", cwd=tmp_path, env=env, background=True)
    try:
        deadline = time.monotonic() + 240
        while len(children()) < 2:
            assert sweep.poll() is None, (tmp_path / "sweep.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "the sweep logged no 2 trials in time"
            time.sleep(0.3)
        server.kill()
        at_kill = len(finished())
        while len(finished()) < at_kill + 2 and sweep.poll() is None:  # trials finish while the server is down
            time.sleep(0.3)
        server.start()
        sweep.wait(timeout=300)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    err = (tmp_path / "sweep.err").read_text()
    assert sweep.returncode == 0, err[-3000:]
    assert "MLflow tracking at" in err and "failed" in err, "the outage was not noticed"
    done = finished()
    assert len(done) == 8, "the outage cost trials"

    first = _cli("mlflow-relog", "outage", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    second = _cli("mlflow-relog", "outage", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert "Logged 0 trial(s) of 'outage' to MLflow (every trial was already there)" in second.stdout
    runs = children()
    numbers = [int(r.data.tags["descentkit.trial"]) for r in runs]
    assert sorted(numbers) == done, f"child runs {sorted(numbers)} for finished trials {done}"
    assert len(numbers) == len(set(numbers)), "duplicate child runs"
    experiment = client.get_experiment_by_name("outage")
    parents = client.search_runs([experiment.experiment_id], "tags.`descentkit.role` = 'parent'")
    assert len(parents) == 1 and all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in runs)
    print(f"\nFIGURES mlflow outage: requested 8, finished {len(done)}, child runs {len(numbers)}, duplicated 0, "
          f"lost 0; first relog: {first.stdout.strip()}; second relog: {second.stdout.strip()}")
