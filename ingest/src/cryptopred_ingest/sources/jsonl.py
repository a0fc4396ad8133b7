"""JSON Lines of Trade records (the `trades` topic's own encoding), one record per line."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import msgspec

from cryptopred_core.records import RecordError, Trade, decode
from cryptopred_ingest.publish import Batch, Reject
from cryptopred_ingest.sources.ids import TickIds

CHUNK_LINES = 50_000


class JsonlTrades:
    """Reads Trade records; a record without `trade_id` gets a deterministic one (TickIds).

    With `pair` set, records of other pairs are rejected.
    """

    def __init__(self, path: Path, pair: str | None = None, chunk_lines: int = CHUNK_LINES):
        self.path = path
        self.pair = pair
        self.chunk_lines = chunk_lines
        self._ids: dict[str, TickIds] = {}

    def batches(self) -> Iterator[Batch]:
        with self.path.open("r", encoding="utf-8", errors="replace") as handle:
            while True:
                lines = list(itertools.islice(handle, self.chunk_lines))
                if not lines:
                    return
                yield self.parse_lines(lines)

    def parse_lines(self, lines: list[str]) -> Batch:
        batch = Batch()
        for line in lines:
            raw = line.rstrip("\r\n")
            if not raw.strip():
                continue
            try:
                trade = decode(raw, Trade)
            except RecordError as exc:
                batch.rejects.append(Reject(exc.reason, raw))
                continue
            if self.pair is not None and trade.pair != self.pair:
                batch.rejects.append(Reject(f"pair: {trade.pair} is not {self.pair}", raw))
                continue
            if trade.trade_id is None:
                ids = self._ids.setdefault(trade.pair, TickIds())
                trade = msgspec.structs.replace(trade, trade_id=ids.one(trade.ts_ms * 10))
            batch.trades.append(trade)
        return batch
