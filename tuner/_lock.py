"""`BudgetLock`: the lock every worker of one study holds from the budget check until its next trial is stored."""

from __future__ import annotations

import fcntl
import os
import zlib
from typing import Any


class BudgetLock:
    """A lock shared by every worker of one study, held from the budget check until
    the worker's next trial exists in the storage.

    Without it two workers that finish a trial at the same moment both see one
    trial left and both start one (measured: 5 trials for `--total-trials 4` with
    3 workers on PostgreSQL). A file store: `flock` on a file beside it; PostgreSQL:
    a session advisory lock. Both are released by the operating system or the
    server when the worker dies. With neither, the lock is a no-op (one process on a
    store nobody else sees). `StorageSpec.lock` picks the kind for a storage.

    Args:
        study_name: the study (the lock's key).
        path: the store's file (a journal or SQLite database): lock a file beside it.
        server_url: a PostgreSQL URL, password included: lock on the server.
    """

    def __init__(self, study_name: str, *, path: str | None = None, server_url: str | None = None) -> None:
        if path is not None and server_url is not None:
            raise ValueError("give path= (a file store) or server_url= (PostgreSQL), not both")
        self._key = zlib.crc32(f"descentkit-budget:{study_name}".encode())
        # realpath: the same file named relatively in one shell and absolutely in another
        self._path = None if path is None else f"{os.path.realpath(path)}.budget-{self._key:08x}.lock"
        self._engine: Any = None
        self._held: Any = None
        if server_url is not None:
            import sqlalchemy

            # AUTOCOMMIT: no transaction left idle while the lock is held, so a server's
            # idle_in_transaction_session_timeout cannot cut the session mid-trial.
            self._engine = sqlalchemy.create_engine(server_url, poolclass=sqlalchemy.pool.NullPool,
                                                    isolation_level="AUTOCOMMIT")

    def acquire(self) -> None:
        if self._held is not None:
            return
        if self._path is not None:
            handle = open(self._path, "a")
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._held = handle
        elif self._engine is not None:
            import sqlalchemy

            connection = self._engine.connect()
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self._key})
            self._held = connection
        else:
            self._held = True

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None or held is True:
            return
        if self._path is not None:
            fcntl.flock(held, fcntl.LOCK_UN)
            held.close()
        else:
            import sqlalchemy

            try:
                held.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            except sqlalchemy.exc.SQLAlchemyError:
                pass  # the session is gone, and the lock with it: never fail the trial for that
            finally:
                held.close()  # closing the session releases it in any case

    def __enter__(self) -> BudgetLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
