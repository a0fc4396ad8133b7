"""Batched, transactional DB writes through the stage retry policy (`cryptopred_core.retry`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import msgspec
import psycopg

from cryptopred_core.db import upsert
from cryptopred_core.retry import DB_BACKOFF_INITIAL_S, DbCalls, StoppedError
from cryptopred_core.settings import Settings


class WriterStoppedError(StoppedError):
    """The writer was asked to stop while the DB was unreachable; nothing was committed."""


class DbWriter:
    """Upserts a batch of rows per table in one transaction. An unreachable or silent DB is
    retried for at most `retry_max_s` (each call cut after `timeout_s`); any other error, or
    an outage longer than that, is raised so that the stage fails and restarts."""

    def __init__(
        self,
        url: str,
        dialect: str,
        *,
        timeout_s: float = 10.0,
        retry_max_s: float = 60.0,
        retry_initial_s: float = DB_BACKOFF_INITIAL_S,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.dialect = dialect
        self.db = DbCalls(
            url,
            timeout_s=timeout_s,
            retry_max_s=retry_max_s,
            stop=stop,
            sleep=sleep,
            backoff_initial_s=retry_initial_s,
        )
        self.rows_written = 0

    @classmethod
    def from_settings(cls, settings: Settings, stop: threading.Event | None = None) -> DbWriter:
        """A writer bounded by `db_timeout_s` and `db_retry_max_s`."""
        return cls(
            settings.db_url,
            settings.db_dialect,
            timeout_s=settings.db_timeout_s,
            retry_max_s=settings.db_retry_max_s,
            stop=stop,
        )

    @property
    def retries(self) -> int:
        return self.db.retries

    def write(self, rows: dict[str, list[msgspec.Struct]]) -> int:
        """Commit every row (or raise); returns the number of rows sent."""
        if not any(rows.values()):
            return 0

        def transaction(conn: psycopg.Connection) -> int:
            count = sum(
                upsert(conn, table, batch, self.dialect, commit=False)
                for table, batch in rows.items()
            )
            conn.commit()
            return count

        try:
            count = self.db.run("db write", transaction)
        except StoppedError as exc:
            raise WriterStoppedError(str(exc)) from exc.__cause__
        self.rows_written += count
        return count

    def close(self) -> None:
        self.db.close()
