"""The indicator stage: `candles` → `technical_indicators` (TA-Lib stream handles per series).

Handles cannot be pickled, so the stage keeps its history in the DB instead: every final row it
produces is also upserted into `technical_indicators` before its offsets are committed. After a
restart each (pair, width) is rebuilt lazily from its last stored final rows with
`open_and_fill`; replayed candles older than that history are skipped as stale.
"""

from __future__ import annotations

from cryptopred import tables, topics
from cryptopred.db import connect, fetch_all
from cryptopred.pipeline.stage import Emit, Inbound, Stage
from cryptopred.records import Candle, IndicatorRow, field_names
from cryptopred_ingest.indicators import RESTORE_CANDLES, IndicatorEngine

_COLUMNS = ", ".join(f'"{c}"' for c in field_names(IndicatorRow))


class IndicatorStage(Stage):
    """Computes indicator rows for open (peek) and final (update) candles."""

    name = "indicators"
    topics = (topics.CANDLES,)

    def __init__(self, db_url: str, history: int = RESTORE_CANDLES) -> None:
        self.db_url = db_url
        self.history = history
        self.engine = IndicatorEngine()
        self._ready: set[tuple[str, int]] = set()
        self._next: dict[tuple[str, int], int] = {}
        self._last_event_ms: int | None = None

    def _restore(self, pair: str, candle_seconds: int) -> None:
        with connect(self.db_url) as conn:
            rows = fetch_all(
                conn,
                f"SELECT {_COLUMNS} FROM technical_indicators "
                "WHERE pair = %s AND candle_seconds = %s AND final "
                "ORDER BY window_start_ms DESC LIMIT %s",
                (pair, candle_seconds, self.history),
            )
        stored = [IndicatorRow(**r) for r in reversed(rows)]
        if stored:
            self.engine.restore(stored, last_row=stored[-1])
        self._ready.add((pair, candle_seconds))

    def handle(self, message: Inbound, now_ms: int, out: Emit) -> None:
        self._next[(message.topic, message.partition)] = message.offset + 1
        candle = self.decode_or_dead_letter(message, Candle, now_ms, out)
        if candle is None:
            return
        if (candle.pair, candle.candle_seconds) not in self._ready:
            self._restore(candle.pair, candle.candle_seconds)
        for row in self.engine.on_candle(candle):
            out.record(topics.TECHNICAL_INDICATORS, row.pair, row)
            if row.final:
                out.row(tables.TECHNICAL_INDICATORS, row)
        if self._last_event_ms is None or candle.window_end_ms > self._last_event_ms:
            self._last_event_ms = candle.window_end_ms

    def revoke(self, partitions: list[tuple[str, int]]) -> None:
        # series do not record their partition; rebuild all of them from the DB when next seen
        self.engine = IndicatorEngine()
        self._ready.clear()
        for tp in partitions:
            self._next.pop(tp, None)

    def safe_offsets(self) -> dict[tuple[str, int], int]:
        return dict(self._next)

    def last_event_ms(self) -> int | None:
        return self._last_event_ms
