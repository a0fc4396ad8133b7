"""Batched, transactional DB writes that survive a DB outage: retried with backoff, never lost."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import msgspec
import psycopg

from cryptopred.db import connect, upsert

log = logging.getLogger(__name__)


class WriterStoppedError(Exception):
    """The writer was asked to stop while the DB was unreachable; nothing was committed."""


class DbWriter:
    """Upserts a batch of rows per table in one transaction, reconnecting on failure."""

    def __init__(
        self,
        url: str,
        dialect: str,
        *,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.dialect = dialect
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.stop = stop or threading.Event()
        self.sleep = sleep
        self.retries = 0
        self.rows_written = 0
        self._conn: psycopg.Connection | None = None

    def write(self, rows: dict[str, list[msgspec.Struct]]) -> int:
        """Commit every row or raise WriterStoppedError; returns the number of rows sent."""
        if not any(rows.values()):
            return 0
        backoff_s = self.retry_initial_s
        while True:
            try:
                conn = self._connection()
                count = sum(
                    upsert(conn, table, batch, self.dialect, commit=False)
                    for table, batch in rows.items()
                )
                conn.commit()
                self.rows_written += count
                return count
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._drop_connection()
                self.retries += 1
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.warning("db write failed (%s); retrying in %.1f s", first, backoff_s)
                if self.stop.is_set():
                    raise WriterStoppedError("stopped while the DB was unreachable") from None
                self.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.retry_max_s)

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url, timeout_s=5)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        self._drop_connection()
