"""Source watermarks: how far a live source's feed is known complete, and where that is written.

The candle stage closes an idle pair's windows only up to its source's watermark, so trades a
source is still repairing from REST land in their candles instead of the dlq.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import psycopg
from psycopg import sql

from cryptopred_core import tables
from cryptopred_core.db import connect, upsert
from cryptopred_core.db.rows import SourceWatermark

log = logging.getLogger(__name__)


class WatermarkWriter(Protocol):
    """Where a live source's watermark rows go (table `source_watermarks`)."""

    def write(self, rows: Sequence[SourceWatermark]) -> bool:
        """Upsert the rows; False when they could not be written (they are sent again later)."""
        ...

    def delete(self, source: str) -> None:
        """Remove every row of `source` (a graceful stop: nothing to hold back any more)."""
        ...


class DbWatermarkWriter:
    """Writes watermark rows over one lazily opened connection; a DB error is logged and the
    connection reopened on the next write (the watermarks stay put meanwhile)."""

    def __init__(
        self,
        db_url: str,
        dialect: str,
        connect_db: Callable[[str], psycopg.Connection] = connect,
    ) -> None:
        self.db_url = db_url
        self.dialect = dialect
        self._connect_db = connect_db
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect_db(self.db_url)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def write(self, rows: Sequence[SourceWatermark]) -> bool:
        try:
            upsert(self._connection(), tables.SOURCE_WATERMARKS, rows, self.dialect)
        except psycopg.Error as exc:
            log.warning("source watermarks: not written (%s: %.200s)", type(exc).__name__, exc)
            self._drop()
            return False
        return True

    def delete(self, source: str) -> None:
        statement = sql.SQL("DELETE FROM {} WHERE source = %s").format(
            sql.Identifier(tables.SOURCE_WATERMARKS)
        )
        try:
            conn = self._connection()
            conn.execute(statement, (source,))
            conn.commit()
        except psycopg.Error as exc:
            log.warning("source watermarks: %s not deleted (%.200s)", source, exc)
        finally:
            self._drop()


class Completeness:
    """The wall time up to which every trade of every followed pair has been produced.

    It moves to a message's arrival time only while the feed is continuous: the connection's
    catch-up repair is done and the previous message came at most `silence_ms` earlier. A
    message after a longer silence asks for a REST repair first (`needs_repair`); after a
    repair that started at `t`, everything up to `t` is known. Silent, disconnected or
    repairing: it stays put.
    """

    def __init__(self, silence_ms: int) -> None:
        self.silence_ms = silence_ms
        self.known_ms: int | None = None
        self._last_message_ms: int | None = None
        self._repairing = True

    def connected(self) -> None:
        """A new connection: nothing it delivers counts until its catch-up repair is done."""
        self._repairing = True
        self._last_message_ms = None

    def repaired(self, started_ms: int) -> None:
        """A REST repair that started at `started_ms` has produced every trade it found."""
        self._repairing = False
        self._last_message_ms = started_ms
        self.known_ms = started_ms if self.known_ms is None else max(self.known_ms, started_ms)

    def needs_repair(self, now_ms: int) -> bool:
        """True when a message arriving now follows a silence the feed may have lost trades in."""
        last = self._last_message_ms
        return not self._repairing and last is not None and now_ms - last > self.silence_ms

    def message(self, now_ms: int) -> None:
        """A message arrived (and was handled, id jumps repaired) at `now_ms`."""
        if self._repairing:
            return
        self._last_message_ms = now_ms
        self.known_ms = now_ms if self.known_ms is None else max(self.known_ms, now_ms)


def watermark_rows(
    source: str,
    pairs: Sequence[str],
    through_ms: int,
    written: dict[str, int],
    now_ms: int,
) -> list[SourceWatermark]:
    """Rows for the pairs whose written watermark is behind `through_ms` (never backwards)."""
    return [
        SourceWatermark(source=source, pair=p, through_ms=through_ms, updated_ms=now_ms)
        for p in pairs
        if through_ms > written.get(p, -1)
    ]
