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
