"""Where studies live: an embedded journal file by default, any Optuna storage URL on request.

The default is one journal file per study under `./descentkit_studies/` in the
working directory: no server, safe for several processes on one machine, and
about 10x faster than SQLite here (shared/DESIGN.md, Defaults).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

DEFAULT_DIR = "descentkit_studies"
JOURNAL_SUFFIXES = (".journal", ".log", ".jsonl")
# Heartbeats let a worker that died be noticed and its trial re-run (RDB storages only).
# DESCENTKIT_HEARTBEAT_S overrides the interval (the grace period is 3 intervals).
HEARTBEAT_INTERVAL_S = 60
HEARTBEAT_GRACE_INTERVALS = 3


def default_storage_url(study_name: str, root: str | os.PathLike[str] | None = None) -> str:
    """The embedded journal file for `study_name` (a path, not a URL)."""
    base = Path(root) if root is not None else Path.cwd() / DEFAULT_DIR
    return str(base / f"{study_name}.journal")


def is_journal(url: str) -> bool:
    return url.startswith("journal:") or url.endswith(JOURNAL_SUFFIXES)


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for logs, tags and summaries."""
    if is_journal(url) or "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: hide everything between "//" and "@"
        head, _, tail = url.partition("://")
        if "@" in tail:
            return f"{head}://***@{tail.split('@', 1)[1]}"
        return url


def open_storage(url: str | None, study_name: str) -> tuple[Any, str]:
    """An Optuna storage for `url` (None: the embedded default) and its printable location."""
    import optuna

    if url is None:
        url = default_storage_url(study_name)
    if is_journal(url):
        path = Path(url.removeprefix("journal:")).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend), str(path)
    if url.startswith("sqlite:"):
        return optuna.storages.RDBStorage(url), url
    if "://" in url:
        interval = int(os.environ.get("DESCENTKIT_HEARTBEAT_S", HEARTBEAT_INTERVAL_S))
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = _rdb(url, interval)
        return storage, redact(url)
    # A bare path: a journal file there.
    return open_storage(f"journal:{url}", study_name)


def _rdb(url: str, interval: int) -> Any:
    import optuna

    return optuna.storages.RDBStorage(
        url,
        heartbeat_interval=interval,
        grace_period=interval * HEARTBEAT_GRACE_INTERVALS,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
        engine_kwargs={"pool_pre_ping": True},
    )
