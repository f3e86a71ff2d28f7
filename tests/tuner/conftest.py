"""Fixtures for tuner tests: small study files and a CLI runner in a scratch directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from descentkit.studies import builtin_study_path


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `descentkit ARGS` in a fresh process, as a user would."""
    # MLflow tracking is off unless a test turns it on: a fresh mlflow.db costs ~8 s of migrations.
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "DESCENTKIT_TRACKING": "false", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "descentkit.tuner.cli", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def cli(tmp_path: Path):
    def _run(*args: str, **kwargs):
        return run_cli(*args, cwd=tmp_path, **kwargs)

    return _run


@pytest.fixture
def small_digits(tmp_path: Path) -> Path:
    """The built-in digits study cut to 2 epochs and a narrow, fast search space."""
    data = yaml.safe_load(builtin_study_path("digits").read_text())
    data["name"] = "digits-small"
    data["max_epochs"] = 2
    data["search_space"]["batch_size"] = {"type": "categorical", "choices": [64, 128]}
    data["search_space"]["learning_rate"] = {"type": "float", "low": 0.01, "high": 0.3, "log": True}
    data["pruner"] = "none"
    path = tmp_path / "digits-small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
