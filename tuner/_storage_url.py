"""Storage URLs: what kind of store a URL names, its printable form, and checks before use.

Fast to import and to run: no TensorFlow, no Optuna (the CLI checks a storage
option before it loads either); a server gets CONNECT_TIMEOUT_S to answer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from descentkit.callbacks._mlflow import redact_password
from descentkit.tuner.config import ConfigError

JOURNAL_SUFFIXES = (".journal", ".log", ".jsonl")
# Seconds a database server gets to answer a connection (a storage check stays under 10 s).
CONNECT_TIMEOUT_S = 5
EXAMPLES = "postgresql+psycopg2://user@host/db, sqlite:///path/to/studies.db or a journal file path"
KINDS = ("journal", "sqlite", "postgresql", "server")


class StorageError(ConfigError):
    """A storage URL or path that cannot work: one line naming it (password hidden) and the fix."""


def storage_kind(url: str) -> str:
    """"journal" (a file path, or `journal:PATH`), "sqlite", "postgresql" or "server" (another database)."""
    if url.startswith("journal:") or url.endswith(JOURNAL_SUFFIXES) or "://" not in url:
        return "journal"
    if url.startswith("sqlite:"):
        return "sqlite"
    if url.startswith(("postgresql:", "postgresql+")):
        return "postgresql"
    return "server"


def journal_path(url: str) -> Path:
    return Path(url.removeprefix("journal:")).expanduser()


def sqlite_path(url: str) -> str | None:
    """The database file of a SQLite URL; None for an in-memory one."""
    path = url.split(":///", 1)[1] if ":///" in url else ""
    return None if path in ("", ":memory:") or path.startswith("file:") else path


def check_storage(url: str | None) -> None:
    """StorageError (one line: the URL, password hidden, and what to do) when `url`
    cannot hold a study: a bad scheme, a missing driver, a directory that does not
    exist, a read-only file, a server that cannot be reached or refuses the login.

    Fast: no TensorFlow, no Optuna; a server gets CONNECT_TIMEOUT_S to answer.
    None (the embedded default) is checked when it is opened.
    """
    if url is None:
        return
    if storage_kind(url) == "journal":
        _check_file(journal_path(url), url, journal=True)
        return
    import sqlalchemy
    from sqlalchemy.engine import make_url

    shown = redact_password(url)
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(f"storage {shown}: not a storage URL; write {EXAMPLES}") from None
    scheme = parsed.drivername
    if scheme in ("postgres", "postgres+psycopg2"):
        raise StorageError(f"storage {shown}: {scheme}:// is not a scheme SQLAlchemy knows; "
                           f"write postgresql+psycopg2://{shown.split('://', 1)[1]}")
    try:
        parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise StorageError(f"storage {shown}: unknown scheme {scheme!r}; write {EXAMPLES}") from None
    except ImportError as exc:
        extra = " (pip install 'descentkit[postgres]')" if parsed.get_backend_name() == "postgresql" else ""
        raise StorageError(f"storage {shown}: the driver for {scheme} is not installed ({exc}); install it{extra}") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            return
        _check_file(Path(database).expanduser(), shown, journal=False)
        return
    _check_server(url, shown, parsed)


def _check_file(path: Path, shown: str, journal: bool) -> None:
    """The file (a journal, or a SQLite database) can be created or written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise StorageError(f"storage {shown}: {path} is a directory; name a file in it (e.g. {path / 'studies.db'})")
    if journal:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"storage {shown}: cannot create the directory {parent} ({exc.strerror}); "
                               "choose a path you can write") from None
    elif not parent.is_dir():
        raise StorageError(f"storage {shown}: the directory {parent} does not exist; "
                           f"create it (mkdir -p {parent}) or choose another path")
    if path.exists() and not os.access(path, os.W_OK):
        raise StorageError(f"storage {shown}: {path} is read-only; make it writable (chmod u+w {path}) "
                           "or copy it to a path you can write")
    if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise StorageError(f"storage {shown}: the directory {parent} is not writable; "
                           "choose a path you can write or fix its permissions")
    if not journal and path.exists() and not os.access(parent, os.W_OK | os.X_OK):
        # SQLite writes its rollback journal beside the database
        raise StorageError(f"storage {shown}: the directory {parent} is read-only and SQLite writes beside "
                           f"{path.name}; make it writable or move the database")


def connect_args(parsed: Any) -> dict[str, Any]:
    return {"connect_timeout": CONNECT_TIMEOUT_S} if parsed.get_backend_name() == "postgresql" else {}


def _check_server(url: str, shown: str, parsed: Any) -> None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, connect_args=connect_args(parsed))
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        raise StorageError(describe_server_error(shown, parsed, exc)) from None


def describe_server_error(shown: str, parsed: Any, exc: BaseException) -> str:
    """One line for a database server's refusal: what it said and what to do."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    lowered = text.lower()
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    if isinstance(exc, ImportError):
        extra = "pip install 'descentkit[postgres]'" if parsed.get_backend_name() == "postgresql" else "install it"
        return f"storage {shown}: the database driver is not installed ({first}); {extra}"
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return (f"storage {shown}: the server refused the password of user {parsed.username!r}; "
                "check the password (PGPASSWORD in DESCENTKIT_STORAGE) and the user name")
    if "database" in lowered and "does not exist" in lowered:
        return (f"storage {shown}: database {parsed.database!r} does not exist on {where}; create it "
                f"(createdb --owner {parsed.username or 'USER'} {parsed.database}) or fix the name")
    if "role" in lowered and "does not exist" in lowered:
        return (f"storage {shown}: user {parsed.username!r} does not exist on {where}; create it "
                "(createuser --pwprompt NAME) or fix the user name")
    if any(k in lowered for k in ("connection refused", "could not connect", "timeout expired", "timed out",
                                  "could not translate host name", "no route to host", "name or service not known",
                                  "network is unreachable")):
        return (f"storage {shown}: cannot reach the database server at {where} ({first}); check the host "
                "and port, and that the server is running and accepts TCP connections from here")
    if "invalid response" in lowered or "closed the connection unexpectedly" in lowered:
        return (f"storage {shown}: what answers at {where} is not a database server accepting connections "
                f"({first}); check the host and port")
    return f"storage {shown}: the database refused the connection ({first}); check the URL"
