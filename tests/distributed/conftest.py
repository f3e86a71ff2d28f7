"""A real PostgreSQL server on 127.0.0.1 for the distributed tests, started and stopped here.

`.ci/run` installs Debian's `postgresql`; this fixture runs its binaries on a
throw-away data directory and a free port. As root the server runs as the
`postgres` user (PostgreSQL refuses to run as root). The `descentkit` user logs
in without a password; `dk_password` needs one (PASSWORD_USER below), so a wrong
password is refused for real. With CI=true a missing PostgreSQL fails the run
instead of skipping (`.ci/run` must have installed it).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

PASSWORD_USER, PASSWORD = "dk_password", "right-password"


def _missing(reason: str) -> None:
    """Skip on a developer's machine; fail under CI, where the component must be there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    bindir = _pg_bin()
    if bindir is None:
        _missing("PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)")
    as_root = os.geteuid() == 0
    if as_root:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root and there is no `postgres` user to run the server as")
    root = Path(tempfile.mkdtemp(prefix="descentkit-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if as_root:
        os.chown(root, user.pw_uid, user.pw_gid)
        os.chown(sockets, user.pw_uid, user.pw_gid)

    def run(*cmd: str, **kwargs) -> subprocess.CompletedProcess:
        if as_root:
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)

    port = _free_port()
    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "descentkit", "--no-sync")
    hba = ("local all all trust\nhost all descentkit 127.0.0.1/32 trust\n"
           "host all all 127.0.0.1/32 scram-sha-256\n")
    (data / "pg_hba.conf").write_text(hba)
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
        "-o", f"-p {port} -h 127.0.0.1 -k {sockets} -c fsync=off -c max_connections=200", "start")
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "descentkit", "descentkit_test")
        run(str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "descentkit", "-d", "descentkit_test",
            "-c", f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'")
        yield f"postgresql+psycopg2://descentkit@127.0.0.1:{port}/descentkit_test"
    finally:
        subprocess.run(
            (("runuser", "-u", "postgres", "--") if as_root else ()) + (str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def password_url(postgres_url) -> str:
    """The test database as the user that needs a password (the right one)."""
    return postgres_url.replace("//descentkit@", f"//{PASSWORD_USER}:{PASSWORD}@")


@pytest.fixture
def fresh_database(postgres_url):
    """An empty database of its own for one test: workers race to create the tables."""
    import sqlalchemy

    name = f"t{time.time_ns()}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
