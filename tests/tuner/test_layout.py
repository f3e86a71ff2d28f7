"""The layout contract: one `descentkit` namespace, no bare top-level modules."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)


def test_subpackages_import_from_any_directory(tmp_path):
    code = "import descentkit.tuner, descentkit.diagnostics, descentkit.callbacks, descentkit.studies"
    assert _run(code, tmp_path).returncode == 0


def test_bare_callbacks_module_is_not_importable(tmp_path):
    for bare in ("callbacks", "tuner", "diagnostics", "studies"):
        result = _run(f"import {bare}", tmp_path)
        assert result.returncode != 0, f"a bare `{bare}` module is importable"
        assert "ModuleNotFoundError" in result.stderr


def test_diagnostics_imports_no_deep_learning_stack(tmp_path):
    code = (
        "import sys, descentkit.diagnostics\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'optuna', 'mlflow') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == ""


def test_the_storage_helpers_import_no_tensorflow_and_callbacks_still_resolve(tmp_path):
    code = (
        "import sys\n"
        "import descentkit.tuner.storage, descentkit.callbacks._mlflow\n"
        "print('tensorflow' in sys.modules)\n"
        "from descentkit.callbacks import TrainingMonitor, MLflowLogger\n"
        "print(TrainingMonitor.__module__, MLflowLogger.__module__, 'tensorflow' in sys.modules)"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.split("\n")[:2]
    assert before == "False"
    assert after == "descentkit.callbacks.training_monitor descentkit.callbacks.mlflow_logger True"


def test_one_redaction_hides_the_password_of_storage_and_tracking_urls():
    from descentkit.callbacks._mlflow import redact_password

    assert redact_password("postgresql+psycopg2://bob:s3cr/t@127.0.0.1:5432/db") == "postgresql+psycopg2://bob:***@127.0.0.1:5432/db"
    assert redact_password("http://alice:tok@mlflow.example:5000/") == "http://alice:***@mlflow.example:5000/"
    for unchanged in ("postgresql://bob@db/x", "sqlite:///runs/a:b@c.db", "./journal.log", "sqlite:///:memory:"):
        assert redact_password(unchanged) == unchanged
