"""Fixtures for the MLflow tests: a tracking database per test, a fake sweep, a real server.

Creating an MLflow SQLite database runs its schema migrations (about 8 s here), so
one migrated database is made per session and copied for each test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

DIVERGING_LR = 0.3  # the fake objective's trials above this learning rate diverge
FAILING_BATCH = 128  # ... and these fail with an exception


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow-template")
    path = root / "mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # the Default experiment's artifact location is ./mlruns/0 at creation
        MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(migrated_db, tmp_path, monkeypatch) -> str:
    """A fresh file-based SQLite tracking URI in tmp_path (artifacts land in tmp_path too)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tmp_path / "mlflow.db"
    shutil.copy(migrated_db, path)
    return f"sqlite:///{path}"


def fake_objective(trial: optuna.Trial) -> float:
    """Sets the user attributes `descentkit.tuner.objective.Objective` sets, with no training."""
    lr = trial.suggest_float("learning_rate", 1e-3, 1.0, log=True)
    batch = trial.suggest_categorical("batch_size", [32, 64, FAILING_BATCH])
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "momentum"])
    history: dict[str, list[float]] = {"loss": [], "val_loss": [], "val_accuracy": []}
    if batch == FAILING_BATCH and lr < DIVERGING_LR:
        trial.set_user_attr("error_type", "ValueError")
        trial.set_user_attr("error_message", "the model builder failed")
        raise ValueError("the model builder failed")
    for epoch in range(3):
        if lr > DIVERGING_LR and epoch == 1:
            history["loss"].append(float("nan"))
            history["val_loss"].append(float("nan"))
            history["val_accuracy"].append(0.1)
            finding = {"symptom": "divergence", "severity": "critical", "epoch": 1, "step": 12,
                       "message": "the loss became NaN at step 12.",
                       "advice": "lower the learning rate below the measured stable bound", "evidence": {"step": 12}}
            trial.set_user_attr("history", history)
            trial.set_user_attr("findings", [finding])
            trial.set_user_attr("symptoms", ["divergence"])
            trial.set_user_attr("epochs_trained", 2)
            trial.set_user_attr("prune_reason", "divergence")
            raise optuna.TrialPruned("divergence at epoch 2")
        accuracy = 0.5 + 0.4 * min(lr, 0.2) / 0.2 * (epoch + 1) / 3 + (0.01 if optimizer == "momentum" else 0)
        history["loss"].append(1 - accuracy)
        history["val_loss"].append(1.1 - accuracy)
        history["val_accuracy"].append(accuracy)
        trial.report(accuracy, epoch)
    trial.set_user_attr("history", history)
    trial.set_user_attr("findings", [])
    trial.set_user_attr("symptoms", [])
    trial.set_user_attr("epochs_trained", 3)
    trial.set_user_attr("best_epoch", 2)
    return accuracy


def make_study(name: str = "fake-sweep", storage: str | None = None) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.RandomSampler(seed=3))
    study.set_user_attr("config", {
        "name": name, "max_epochs": 3, "objective": {"metric": "val_accuracy", "direction": "maximize"},
        "search_space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
                         "batch_size": {"type": "categorical", "choices": [32, 64, FAILING_BATCH]},
                         "optimizer": {"type": "categorical", "choices": ["sgd", "momentum"]},
                         "schedule": "constant"},
    })
    study.set_user_attr("objective_metric", "val_accuracy")
    return study


def run_fake_sweep(study: optuna.Study, trials: int, callbacks=()) -> None:
    study.optimize(fake_objective, n_trials=trials, callbacks=list(callbacks), catch=(ValueError,))


@pytest.fixture(scope="session")
def fake_sweep():
    """`make_study(name, storage=None)` and `run(study, trials, callbacks=())` for a sweep with no training."""

    class FakeSweep:
        make_study = staticmethod(make_study)
        run = staticmethod(run_fake_sweep)
        diverging_lr = DIVERGING_LR

    return FakeSweep


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_study_plots(monkeypatch):
    """Skip the parent's study plots (about 3 s per summary on 2 cores); tests that check them don't use this."""
    from descentkit.tuner import report

    monkeypatch.setattr(report, "STUDY_PLOTS", {})


@pytest.fixture
def dead_tracking_uri() -> str:
    """An http tracking URI where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory, migrated_db, request):
    """A real `mlflow server` (lean: 1 worker, no job runner) on a free port; its URL."""
    root = tmp_path_factory.mktemp("mlflow-server")
    shutil.copy(migrated_db, root / "mlflow.db")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "mlflow", "server", "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")]
    log = open(root / "server.log", "w")
    process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def stop() -> None:
        if process.poll() is None:
            os.killpg(process.pid, 15)  # the server's own process group: uvicorn and its worker
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
        log.close()

    request.addfinalizer(stop)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited with {process.returncode}: {(root / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                if response.status == 200:
                    return url
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"mlflow server did not answer /health within 90 s: {(root / 'server.log').read_text()[-2000:]}")
