"""The indicator stage: `candles` → `technical_indicators` (TA-Lib stream handles per series).

Handles cannot be pickled, so the stage keeps its history in the DB instead: every final row it
produces is also upserted into `technical_indicators` before its offsets are committed. After a
restart each (pair, width) is rebuilt lazily from its last stored final rows with
`open_and_fill`; replayed candles older than that history are skipped as stale. A series idle
longer than `series_idle_evict_s` (wall time) is dropped and rebuilt the same way when seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from cryptopred_core import tables, topics
from cryptopred_core.db import fetch_all
from cryptopred_core.pipeline.stage import Emit, Inbound, Stage
from cryptopred_core.records import Candle, IndicatorRow, field_names
from cryptopred_core.retry import DbCalls
from cryptopred_ingest.indicators import MAX_FLAT_CANDLES, RESTORE_CANDLES, IndicatorEngine

_COLUMNS = ", ".join(f'"{c}"' for c in field_names(IndicatorRow))

#: (pair, candle_seconds, limit) -> the series' last `limit` final rows, newest first
HistoryReader = Callable[[str, int, int], list[IndicatorRow]]


def postgres_history(db: DbCalls) -> HistoryReader:
    """A HistoryReader on `technical_indicators` in the pipeline's DB, through the stage's
    DbCalls (bounded by `db_timeout_s`, retried by the DB retry policy)."""

    def read(pair: str, candle_seconds: int, limit: int) -> list[IndicatorRow]:
        def query(conn: psycopg.Connection) -> list[dict[str, Any]]:
            return fetch_all(
                conn,
                f"SELECT {_COLUMNS} FROM technical_indicators "
                "WHERE pair = %s AND candle_seconds = %s AND final "
                "ORDER BY window_start_ms DESC LIMIT %s",
                (pair, candle_seconds, limit),
            )

        rows = db.read(f"read the indicator history of {pair} {candle_seconds} s", query)
        return [IndicatorRow(**r) for r in rows]

    return read


class IndicatorStage(Stage):
    """Computes indicator rows for open (peek) and final (update) candles."""

    name = "indicators"
    topics = (topics.CANDLES,)

    def __init__(
        self,
        db_url: str,
        history: int = RESTORE_CANDLES,
        *,
        series_idle_evict_s: int = 3_600,
        max_flat_candles: int = MAX_FLAT_CANDLES,
        read_history: HistoryReader | None = None,
    ) -> None:
        self.db_url = db_url
        self.history = history
        self.max_flat_candles = max_flat_candles
        self.read_history = (
            read_history if read_history is not None else postgres_history(DbCalls(db_url))
        )
        self.engine = IndicatorEngine(max_flat_candles)
        self.series_idle_evict_ms = series_idle_evict_s * 1000
        self._evict_interval_ms = max(1_000, min(self.series_idle_evict_ms // 10, 60_000))
        self._evicted_ms: int | None = None
        self._seen_ms: dict[tuple[str, int], int] = {}  # wall time a series last had a candle
        self._next: dict[tuple[str, int], int] = {}
        self._last_event_ms: int | None = None

    def _restore(self, pair: str, candle_seconds: int) -> None:
        stored = list(reversed(self.read_history(pair, candle_seconds, self.history)))
        if stored:
            self.engine.restore(stored, last_row=stored[-1])

    def handle(self, message: Inbound, now_ms: int, out: Emit) -> None:
        self._next[(message.topic, message.partition)] = message.offset + 1
        candle = self.decode_or_dead_letter(message, Candle, now_ms, out)
        if candle is None:
            return
        key = (candle.pair, candle.candle_seconds)
        if key not in self._seen_ms:
            self._restore(candle.pair, candle.candle_seconds)
        self._seen_ms[key] = now_ms
        for row in self.engine.on_candle(candle):
            out.record(topics.TECHNICAL_INDICATORS, row.pair, row)
            if row.final:
                out.row(tables.TECHNICAL_INDICATORS, row)
        if self._last_event_ms is None or candle.window_end_ms > self._last_event_ms:
            self._last_event_ms = candle.window_end_ms

    def end_batch(self, now_ms: int, out: Emit) -> None:
        if self._evicted_ms is not None and now_ms - self._evicted_ms < self._evict_interval_ms:
            return
        self._evicted_ms = now_ms
        idle = [k for k, t in self._seen_ms.items() if now_ms - t >= self.series_idle_evict_ms]
        for pair, candle_seconds in idle:  # its final rows are in the DB: rebuilt when seen
            self.engine.drop(pair, candle_seconds)
            del self._seen_ms[(pair, candle_seconds)]

    def revoke(self, partitions: list[tuple[str, int]]) -> None:
        # series do not record their partition; rebuild all of them from the DB when next seen
        self.engine = IndicatorEngine(self.max_flat_candles)
        self._seen_ms.clear()
        for tp in partitions:
            self._next.pop(tp, None)

    def safe_offsets(self) -> dict[tuple[str, int], int]:
        return dict(self._next)

    def last_event_ms(self) -> int | None:
        return self._last_event_ms
