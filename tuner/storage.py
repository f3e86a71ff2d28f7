"""Where studies live: `StorageSpec`, one storage option resolved once (kind, URL, printable
location, lock), opened with retry.

The default is one journal file per study under `./descentkit_studies/` in the
working directory: no server, safe for several processes on one machine, and
about 10x faster than SQLite here.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from descentkit.callbacks._mlflow import redact_password
from descentkit.tuner._lock import BudgetLock
from descentkit.tuner._storage_url import (
    StorageError,
    check_storage,
    connect_args,
    describe_server_error,
    journal_path,
    sqlite_path,
    storage_kind,
)

DEFAULT_DIR = "descentkit_studies"
# Heartbeats let a worker that died be noticed and its trials re-run (RDB storages:
# PostgreSQL, SQLite). DESCENTKIT_HEARTBEAT_S overrides the interval; a trial whose
# heartbeat is older than HEARTBEAT_GRACE_INTERVALS intervals is stale.
HEARTBEAT_INTERVAL_S = 60
HEARTBEAT_GRACE_INTERVALS = 3
OPEN_ATTEMPTS = 5

T = TypeVar("T")


def heartbeat_interval_s() -> int:
    return max(1, int(os.environ.get("DESCENTKIT_HEARTBEAT_S", HEARTBEAT_INTERVAL_S)))


def default_storage_url(study_name: str, root: str | os.PathLike[str] | None = None) -> str:
    """The embedded journal file for `study_name` (a path, not a URL)."""
    base = Path(root) if root is not None else Path.cwd() / DEFAULT_DIR
    return str(base / f"{study_name}.journal")


@dataclass(frozen=True)
class StorageSpec:
    """A study's storage, resolved once from the user's option.

    Args:
        url: the storage option as given: an Optuna storage URL, a journal file's
            path, or None for the embedded default (`default_storage_url`).
        study_name: the study stored there (names the default file and the lock).
    """

    url: str | None
    study_name: str

    @property
    def resolved(self) -> str:
        return self.url if self.url is not None else default_storage_url(self.study_name)

    @property
    def kind(self) -> str:
        """"journal", "sqlite", "postgresql" or "server"."""
        return storage_kind(self.resolved)

    @property
    def shown(self) -> str:
        """The storage with its password hidden (for messages, tags and summaries)."""
        return redact_password(self.resolved) if self.kind != "journal" else str(journal_path(self.resolved))

    @property
    def on_a_server(self) -> bool:
        """Whether workers on other machines may share it."""
        return self.kind in ("postgresql", "server")

    def check(self) -> None:
        """StorageError now, in one line, for a storage that cannot hold a study (`check_storage`)."""
        check_storage(self.url)

    def lock(self) -> BudgetLock:
        """The study's budget lock on this storage (a no-op where no other process can see it)."""
        if self.kind == "journal":
            return BudgetLock(self.study_name, path=str(journal_path(self.resolved)))
        if self.kind == "sqlite":
            return BudgetLock(self.study_name, path=sqlite_path(self.resolved))
        if self.kind == "postgresql":
            return BudgetLock(self.study_name, server_url=self.resolved)
        return BudgetLock(self.study_name)

    def open(self) -> Any:
        """An Optuna storage (a journal file's folder is created)."""
        import optuna

        if self.kind == "journal":
            path = journal_path(self.resolved)
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _rdb(self.resolved, heartbeat_interval_s())

    def open_with_retry(self, use: Callable[[Any], T], attempts: int = OPEN_ATTEMPTS) -> T:
        """`use(self.open())`, retried after a short random wait when the storage fails.

        Two workers creating the tables of an empty PostgreSQL database at the same
        moment make one of them fail; by the retry the other has created them. A
        storage still failing raises a one-line StorageError; a ConfigError from
        `use` is raised at once.
        """
        from descentkit.tuner.config import ConfigError

        for attempt in range(attempts):
            try:
                return use(self.open())
            except ConfigError:
                raise
            except Exception as exc:
                if attempt == attempts - 1 or self.url is None:
                    failure = self.failure(exc)
                    if failure is exc:
                        raise
                    raise failure from None
                time.sleep(0.2 + random.random() * (attempt + 1))
        raise AssertionError("unreachable")

    def failure(self, exc: Exception) -> Exception:
        """A StorageError with one line for a storage that failed while in use (a read-only
        database, a server gone), else `exc` itself."""
        import sqlalchemy
        from sqlalchemy.engine import make_url

        shown = self.shown if self.url is not None else "(the embedded journal file)"
        if isinstance(exc, sqlalchemy.exc.SQLAlchemyError) and self.url is not None:
            text = str(getattr(exc, "orig", None) or exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            if "readonly" in text.replace("-", "").replace(" ", "").lower():
                return StorageError(f"storage {shown}: the database is read-only ({first}); make the file and its "
                                    "directory writable, or copy it to a path you can write")
            if self.kind == "sqlite":
                return StorageError(f"storage {shown}: SQLite failed ({first}); check the path and its permissions")
            return StorageError(describe_server_error(shown, make_url(self.url), exc))
        if isinstance(exc, OSError):
            return StorageError(f"storage {shown}: {exc.strerror or exc} ({exc.filename}); choose a path you can write")
        return exc

    def load_study(self) -> Any:
        """The stored Optuna study; KeyError when the storage holds none of that name."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.load_study(study_name=self.study_name, storage=self.open())


def open_storage(url: str | None, study_name: str) -> tuple[Any, str]:
    """An Optuna storage for `url` (None: the embedded default) and its printable location."""
    spec = StorageSpec(url, study_name)
    return spec.open(), spec.shown


def _rdb(url: str, interval: int) -> Any:
    """An RDB storage with heartbeats: a trial whose worker stops beating for the grace
    period is failed and re-queued (at most 3 times) by Optuna's own callback."""
    import optuna
    from sqlalchemy.engine import make_url

    return optuna.storages.RDBStorage(
        url,
        heartbeat_interval=interval,
        grace_period=interval * HEARTBEAT_GRACE_INTERVALS,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
        engine_kwargs={"pool_pre_ping": True, "connect_args": connect_args(make_url(url))},
    )
