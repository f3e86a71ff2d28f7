"""Every storage mistake exits 2 within 10 s with one line naming the URL (password hidden) and the fix.

Real components: the CLI in a fresh process, a real PostgreSQL server (conftest.py)
that refuses a wrong password and a port where nothing listens, and a SQLite file on
a read-only mount (a mount namespace of its own when running as root, whom file
permissions do not stop; chmod otherwise).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from descentkit.studies import builtin_study_path

SECRET = "s3cret-pw"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sweep(tmp_path: Path, storage: str, prefix: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "DESCENTKIT_TRACKING": "false"}
    env.pop("DESCENTKIT_STORAGE", None)
    started = time.monotonic()
    result = subprocess.run([*prefix, sys.executable, "-m", "descentkit.tuner.cli", "sweep", "digits", "--trials", "1",
                             "--storage", storage], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    return result, time.monotonic() - started


def _assert_one_line(result: subprocess.CompletedProcess, elapsed: float, *fragments: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("descentkit: error: storage "), lines[0]
    assert SECRET not in result.stderr + result.stdout, "the password was printed"
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert elapsed < 10, f"took {elapsed:.1f} s"
    return lines[0]


@pytest.mark.parametrize("storage, fragments", [
    (f"postgres://bob:{SECRET}@127.0.0.1/db", ["postgres://bob:***@127.0.0.1/db", "write postgresql+psycopg2://bob:***@127.0.0.1/db"]),
    ("sqlit:///studies.db", ["sqlit:///studies.db", "unknown scheme 'sqlit'", "sqlite:///path/to/studies.db"]),
    ("sqlite:////nonexistent/dir/x.db", ["sqlite:////nonexistent/dir/x.db", "the directory /nonexistent/dir does not exist",
                                         "mkdir -p /nonexistent/dir"]),
])
def test_a_malformed_storage_exits_2_in_one_line(storage, fragments, tmp_path):
    _assert_one_line(*_sweep(tmp_path, storage), *fragments)


def test_an_unreachable_server_exits_2_in_one_line(tmp_path):
    port = _closed_port()
    url = f"postgresql+psycopg2://bob:{SECRET}@127.0.0.1:{port}/db"
    _assert_one_line(*_sweep(tmp_path, url), f"postgresql+psycopg2://bob:***@127.0.0.1:{port}/db",
                     f"cannot reach the database server at 127.0.0.1:{port}", "check the host and port")


def test_a_wrong_password_exits_2_in_one_line(password_url, tmp_path):
    wrong = password_url.replace(":right-password@", f":{SECRET}@")
    assert wrong != password_url
    line = _assert_one_line(*_sweep(tmp_path, wrong), "dk_password:***@127.0.0.1",
                            "the server refused the password of user 'dk_password'")
    assert "PGPASSWORD" in line


def test_a_missing_database_exits_2_in_one_line(postgres_url, tmp_path):
    url = postgres_url.rsplit("/", 1)[0] + "/no_such_db"
    _assert_one_line(*_sweep(tmp_path, url), "database 'no_such_db' does not exist", "createdb")


def test_a_read_only_database_file_exits_2_in_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "studies.db"
    import sqlite3

    sqlite3.connect(db).close()
    url = f"sqlite:///{db}"
    if os.geteuid() == 0:  # root writes through chmod: mount the folder read-only in a namespace of its own
        if shutil.which("unshare") is None:
            pytest.skip("needs unshare to mount a read-only folder as root")
        script = f'mount --bind "{folder}" "{folder}" && mount -o remount,ro,bind "{folder}" "{folder}" && exec "$@"'
        prefix = ("unshare", "--mount", "sh", "-c", script, "sweep")
    else:
        db.chmod(0o444)
        prefix = ()
    _assert_one_line(*_sweep(tmp_path, url, prefix), url, "is read-only", "writable")


def test_the_right_password_opens_the_study(password_url, tmp_path):
    """The check lets a good URL through (the trial itself is not run: --trials 1 of a tiny study)."""
    from descentkit.tuner.storage import check_storage

    check_storage(password_url)  # no exception
