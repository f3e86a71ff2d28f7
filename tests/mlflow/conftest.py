"""Fixtures for the MLflow tests: a tracking database per test, a small real sweep, a real server.

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

# The small sweep's trials above this learning rate diverge (their model scales its
# inputs to infinity: the loss is NaN at the first step), and those at FAILING_BATCH
# below it fail (the model builder raises): every outcome, from real training.
DIVERGING_LR = 0.3
FAILING_BATCH = 128
STUDY_NAME = "small-sweep"


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


def _data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    return x[:150], y[:150], x[150:], y[150:]


def build_model(params):
    """A small MLP; see DIVERGING_LR and FAILING_BATCH for the trials that go wrong on purpose."""
    import keras

    if params["batch_size"] == FAILING_BATCH and params["learning_rate"] < DIVERGING_LR:
        raise ValueError("the model builder failed")
    layers = [keras.Input((8,))]
    if params["learning_rate"] > DIVERGING_LR:
        layers.append(keras.layers.Rescaling(float("inf")))
    return keras.Sequential([*layers, keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])


def small_config(name: str = STUDY_NAME):
    from descentkit.tuner import StudyConfig

    return StudyConfig(
        name=name, seed=3, max_epochs=3, pruner="none", sampler="random", prune_on=["divergence"],
        objective={"metric": "val_accuracy", "direction": "maximize"},
        search_space={"learning_rate": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
                      "batch_size": {"type": "categorical", "choices": [32, 64, FAILING_BATCH]},
                      "optimizer": {"type": "categorical", "choices": ["sgd", "momentum"]},
                      "schedule": "constant"},
    )


def make_study(name: str = STUDY_NAME, storage: str | None = None) -> optuna.Study:
    """The small sweep's study, opened as a sweep opens it (its config and metric stored on it);
    `storage` a journal path, default a new one in a temporary folder."""
    import tempfile

    from descentkit.tuner._study import open_study
    from descentkit.tuner.storage import StorageSpec

    if storage is None:
        storage = str(Path(tempfile.mkdtemp(prefix="descentkit-small-sweep-")) / f"{name}.journal")
    return open_study(small_config(name), StorageSpec(storage, name))


# A new study's first three trials: one of each outcome, whatever the sampler draws after.
FIRST_TRIALS = (
    {"learning_rate": 0.5, "batch_size": 32, "optimizer": "sgd"},           # diverges: PRUNED
    {"learning_rate": 0.05, "batch_size": FAILING_BATCH, "optimizer": "momentum"},  # the builder raises: FAIL
    {"learning_rate": 0.1, "batch_size": 32, "optimizer": "momentum"},      # trains: COMPLETE
)


def run_small_sweep(study: optuna.Study, trials: int, callbacks=()) -> None:
    """`trials` real trials of the small sweep, the tuner's own Objective training each
    (a new study starts with FIRST_TRIALS)."""
    from descentkit.tuner._materialize import as_dataset
    from descentkit.tuner.objective import Objective

    if not study.trials:
        for params in FIRST_TRIALS:
            study.enqueue_trial(params)
    objective = Objective(small_config(study.study_name), as_dataset(_data(), name="data"), builder=build_model)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study.optimize(objective, n_trials=trials, callbacks=list(callbacks), catch=(Exception,))


@pytest.fixture(scope="session")
def small_sweep():
    """`make_study(name, storage=None)` and `run(study, trials, callbacks=())`: a sweep of real short trials."""

    class SmallSweep:
        make_study = staticmethod(make_study)
        run = staticmethod(run_small_sweep)
        diverging_lr = DIVERGING_LR
        name = STUDY_NAME

    return SmallSweep


@pytest.fixture(scope="session")
def swept_journal(tmp_path_factory, small_sweep) -> Path:
    """A journal file holding a finished 8-trial small sweep (run once per session; copy it to change it)."""
    path = tmp_path_factory.mktemp("swept") / f"{STUDY_NAME}.journal"
    small_sweep.run(small_sweep.make_study(storage=str(path)), 8)
    return path


@pytest.fixture
def swept_study(swept_journal, tmp_path) -> optuna.Study:
    """A copy of the finished 8-trial small sweep, in tmp_path, to read or to grow."""
    path = tmp_path / swept_journal.name
    shutil.copy(swept_journal, path)
    return make_study(storage=str(path))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_study_plots(monkeypatch):
    """Skip the parent's study plots (about 3 s per summary on 2 cores); tests that check them don't use this."""
    from descentkit.tuner import _plots

    monkeypatch.setattr(_plots, "STUDY_PLOTS", {})


@pytest.fixture
def dead_tracking_uri() -> str:
    """An http tracking URI where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


class MlflowServer:
    """A real `mlflow server` (lean: 1 worker, no job runner) on 127.0.0.1, in a process group
    of its own; `kill()` is a SIGKILL of the group, `start()` again serves the same store on
    the same port."""

    def __init__(self, root: Path, migrated_db: Path, port: int | None = None) -> None:
        self.root = root
        shutil.copy(migrated_db, root / "mlflow.db")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout: float = 90) -> str:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        command = [sys.executable, "-m", "mlflow", "server", "--workers", "1", "--host", "127.0.0.1",
                   "--port", str(self.port), "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                   "--artifacts-destination", str(self.root / "artifacts")]
        self._log = open(self.root / "server.log", "a")
        self.process = subprocess.Popen(command, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mlflow server exited with {self.process.returncode}: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return self.url
            except OSError:
                time.sleep(0.25)
        pytest.fail(f"mlflow server did not answer /health within {timeout:.0f} s: {self.log()[-2000:]}")

    def log(self) -> str:
        return (self.root / "server.log").read_text()

    def kill(self) -> None:
        """SIGKILL: no shutdown, requests in flight cut off."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)  # the server's own process group: uvicorn and its worker
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        if self._log is not None:
            self._log.close()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory, migrated_db, request):
    """A real `mlflow server` on a free port for the module; its URL."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), migrated_db)
    request.addfinalizer(server.stop)
    return server.start()


@pytest.fixture
def restartable_mlflow_server(tmp_path_factory, migrated_db):
    """A real `mlflow server` for one test, to kill and start again (`MlflowServer`)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-restartable"), migrated_db)
    server.start()
    yield server
    server.stop()
