"""The sink stage: `candles` and `technical_indicators` topics into their DB tables."""

from __future__ import annotations

from collections.abc import Collection

from cryptopred_core import tables, topics
from cryptopred_core.pipeline.stage import Emit, Inbound, Stage
from cryptopred_core.records import Candle, IndicatorRow

Route = tuple[type[Candle], str]  # record type (Candle or IndicatorRow), table

DEFAULT_ROUTES: dict[str, Route] = {
    topics.CANDLES: (Candle, tables.CANDLES),
    topics.TECHNICAL_INDICATORS: (IndicatorRow, tables.TECHNICAL_INDICATORS),
}


class SinkStage(Stage):
    """Turns each record into a row; the runner commits offsets only after the DB commit.

    `upstream_finals` names topics whose final records the producing stage has upserted itself
    before committing its offsets (the indicator stage keeps its history so): the sink checks
    those and moves past them without writing them again, and stores their open records. The
    upsert never turns a final row back into an open one (`cryptopred_core.db`), so an open record
    stored after its window's final row changes nothing.
    """

    name = "sink"

    def __init__(
        self, routes: dict[str, Route] | None = None, upstream_finals: Collection[str] = ()
    ) -> None:
        self.routes = dict(routes or DEFAULT_ROUTES)
        self.upstream_finals = frozenset(upstream_finals)
        unknown = [t for _, t in self.routes.values() if t not in tables.ALL_TABLES]
        if unknown:
            raise ValueError(f"sink cannot store into tables {unknown}")
        self.topics = tuple(self.routes)
        self._next: dict[tuple[str, int], int] = {}
        self._last_event_ms: int | None = None

    def handle(self, message: Inbound, now_ms: int, out: Emit) -> None:
        kind, table = self.routes[message.topic]
        self._next[(message.topic, message.partition)] = message.offset + 1
        record = self.decode_or_dead_letter(message, kind, now_ms, out, f"{message.topic}: ")
        if record is None:
            return
        if not (record.final and message.topic in self.upstream_finals):
            out.row(table, record)
        self._last_event_ms = max(self._last_event_ms or 0, record.window_end_ms)

    def safe_offsets(self) -> dict[tuple[str, int], int]:
        return dict(self._next)

    def revoke(self, partitions: list[tuple[str, int]]) -> None:
        for tp in partitions:
            self._next.pop(tp, None)

    def last_event_ms(self) -> int | None:
        return self._last_event_ms
