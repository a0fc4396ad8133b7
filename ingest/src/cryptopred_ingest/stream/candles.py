"""The candle stage: `trades` → `candles`, with its builder state checkpointed in the DB.

Each cycle writes the partition's row of `stream_checkpoints` (resume offset and `consumed`)
and one row of `stream_pair_states` per pair whose state changed, in the same transaction.
Pairs idle longer than `pair_idle_evict_s` with no open window leave memory; their row brings
them back on their next trade. Live sources' rows in `source_watermarks` hold idle closing of
their pairs at `through_ms` (rows older than `watermark_max_age_s` are ignored); a value read
at one tick is applied at the next, so a repair produced just before its watermark row was
written has been consumed by then (ticks happen only when the input is caught up).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import psycopg

from cryptopred_core import tables, topics
from cryptopred_core.db.rows import SourceWatermark, StreamCheckpoint, StreamPairState
from cryptopred_core.pipeline.checkpoints import (
    load_checkpoints,
    load_pair_state,
    load_pair_states,
    load_source_watermarks,
)
from cryptopred_core.pipeline.resume import ResumePoint
from cryptopred_core.pipeline.stage import Emit, Inbound, Stage
from cryptopred_core.records import TradeWire, encode
from cryptopred_core.retry import DbCalls
from cryptopred_ingest.windows import LATE, CandleBuilder
from cryptopred_ingest.windows_state import NEVER

__all__ = ["LATE", "CandleStage", "CandleState", "PostgresCandleState"]

WATERMARK_READ_INTERVAL_MS = 1_000
T = TypeVar("T")


class CandleState(Protocol):
    """Where the candle stage keeps its state and reads source watermarks (the DB)."""

    def load_checkpoints(self, partitions: list[int]) -> dict[int, StreamCheckpoint]:
        """The partition rows of these partitions of `trades`."""
        ...

    def load_pair_states(self, partitions: list[int]) -> list[StreamPairState]:
        """The pair rows of pairs read from these partitions."""
        ...

    def load_pair_state(self, pair: str) -> StreamPairState | None:
        """One pair's row (an evicted pair trading again)."""
        ...

    def source_watermarks(self) -> Sequence[SourceWatermark]:
        """Every live source's watermark row."""
        ...


class PostgresCandleState:
    """CandleState in the pipeline's DB through the stage's DbCalls: each read is bounded by
    `db_timeout_s`, retried by the DB retry policy, and ends its transaction (no lock is held
    between cycles)."""

    def __init__(self, db: DbCalls, group_id: str) -> None:
        self.db = db
        self.group_id = group_id

    def _run(self, what: str, query: Callable[[psycopg.Connection], T]) -> T:
        return self.db.read(what, query)

    def load_checkpoints(self, partitions: list[int]) -> dict[int, StreamCheckpoint]:
        return self._run(
            "load candle checkpoints",
            lambda c: load_checkpoints(c, self.group_id, topics.TRADES, partitions),
        )

    def load_pair_states(self, partitions: list[int]) -> list[StreamPairState]:
        return self._run(
            "load pair states",
            lambda c: load_pair_states(c, self.group_id, topics.TRADES, partitions),
        )

    def load_pair_state(self, pair: str) -> StreamPairState | None:
        return self._run(
            f"load the state of {pair}",
            lambda c: load_pair_state(c, self.group_id, topics.TRADES, pair),
        )

    def source_watermarks(self) -> Sequence[SourceWatermark]:
        return self._run("read source watermarks", load_source_watermarks)

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        self.db.close()


class CandleStage(Stage):
    """Feeds trades to a CandleBuilder; ships its candles and saves (offset, state) per
    partition and changed pair with them, so a restarted actor resumes exactly where the last
    cycle ended."""

    name = "candles"
    topics = (topics.TRADES,)

    def __init__(
        self,
        db_url: str,
        group_id: str,
        candle_seconds: list[int],
        grace_ms: int,
        open_emit_interval_ms: int,
        *,
        max_future_s: int = 300,
        max_jump_s: int = 86_400,
        max_flat_candles: int = 10_080,
        pair_idle_evict_s: int = 3_600,
        watermark_max_age_s: int = 600,
        state: CandleState | None = None,
    ) -> None:
        self.db_url = db_url
        self.group_id = group_id
        self.state = state if state is not None else PostgresCandleState(DbCalls(db_url), group_id)
        self.builder = CandleBuilder(
            candle_seconds,
            grace_ms,
            open_emit_interval_ms,
            max_future_ms=max_future_s * 1000,
            max_jump_ms=max_jump_s * 1000,
            max_flat_candles=max_flat_candles,
        )
        self.builder.load_pair = self._load_pair
        self.pair_idle_evict_ms = pair_idle_evict_s * 1000
        self.watermark_max_age_ms = watermark_max_age_s * 1000
        self._evict_interval_ms = max(1_000, min(self.pair_idle_evict_ms // 10, 60_000))
        self._saved: dict[int, tuple[int, str]] = {}
        self._clock_ms = -1
        self._holds_read_ms: int | None = None
        self._pending_holds: dict[str, int] | None = None
        self._evicted_ms: int | None = None

    def _load_pair(self, pair: str) -> str | None:
        row = self.state.load_pair_state(pair)
        return None if row is None else row.state

    def assign(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], ResumePoint]:
        ids = [p for t, p in partitions if t == topics.TRADES]
        saved = self.state.load_checkpoints(ids)
        pair_rows = self.state.load_pair_states(ids)
        consumed: dict[int, int] = {}
        for partition, cp in saved.items():
            self.builder.release(partition)
            consumed[partition] = self.builder.restore(cp.state, partition)
            self._saved[partition] = (cp.offset, cp.state)
        for row in pair_rows:
            if row.partition in consumed:
                self.builder.restore_pair(
                    row.pair, row.partition, row.state, consumed[row.partition]
                )
        return {
            (topics.TRADES, p): ResumePoint(cp.offset, cp.updated_ms) for p, cp in saved.items()
        }

    def revoke(self, partitions: list[tuple[str, int]]) -> None:
        for _, partition in partitions:
            self.builder.release(partition)
            self._saved.pop(partition, None)

    def handle(self, message: Inbound, now_ms: int, out: Emit) -> None:
        """Decode the trade (msgspec's C-validated wire type) and add it to the builder."""
        if now_ms != self._clock_ms:  # the builder learns the batch's wall time before its trades
            self.builder.observe_clock(now_ms)
            self._clock_ms = now_ms
        trade = self.decode_or_dead_letter(message, TradeWire, now_ms, out)
        if trade is not None:
            self.builder.add(trade, message.partition, message.offset)

    def tick(self, now_ms: int, out: Emit) -> None:
        # the runner ticks only when caught up, so a pair looks idle only when it really is
        self.builder.observe_clock(now_ms)
        if self._pending_holds is not None:  # read at the previous tick: repairs are in by now
            self.builder.set_holds(self._pending_holds)
            self._pending_holds = None
        if self._holds_read_ms is None or now_ms - self._holds_read_ms >= (
            WATERMARK_READ_INTERVAL_MS
        ):
            self._pending_holds = self._holds(self.state.source_watermarks(), now_ms)
            self._holds_read_ms = now_ms
        self.builder.tick(now_ms)

    def _holds(self, rows: Sequence[SourceWatermark], now_ms: int) -> dict[str, int]:
        """Per pair, the smallest `through_ms` among its sources' fresh watermark rows."""
        holds: dict[str, int] = {}
        for row in rows:
            if now_ms - row.updated_ms > self.watermark_max_age_ms:
                continue  # a dead source must not freeze its pairs' candles
            holds[row.pair] = min(row.through_ms, holds.get(row.pair, row.through_ms))
        return holds

    def end_batch(self, now_ms: int, out: Emit) -> None:
        emitted = self.builder.drain()
        for candle in emitted.candles:
            out.record(topics.CANDLES, candle.pair, candle)
        for rejected in emitted.rejected:
            place = (topics.TRADES, rejected.partition, rejected.offset)
            out.dead_letter(self.name, rejected.reason, encode(rejected.trade), now_ms, place)
        if self._evicted_ms is None or now_ms - self._evicted_ms >= self._evict_interval_ms:
            # before this cycle's pair rows: only pairs saved by an earlier cycle are evicted
            self.builder.evict_idle(now_ms, self.pair_idle_evict_ms)
            self._evicted_ms = now_ms
        for partition, cp in self.builder.checkpoint(with_pairs=False).items():
            if self._saved.get(partition) == (cp.offset, cp.state):
                continue
            self._saved[partition] = (cp.offset, cp.state)
            out.row(
                tables.STREAM_CHECKPOINTS,
                StreamCheckpoint(
                    group_id=self.group_id,
                    topic=topics.TRADES,
                    partition=partition,
                    offset=cp.offset,
                    state=cp.state,
                    updated_ms=now_ms,
                ),
            )
        for pc in self.builder.changed_pairs():
            out.row(
                tables.STREAM_PAIR_STATES,
                StreamPairState(
                    group_id=self.group_id,
                    topic=topics.TRADES,
                    pair=pc.pair,
                    partition=pc.partition,
                    state=pc.state,
                    updated_ms=now_ms,
                ),
            )

    def safe_offsets(self) -> dict[tuple[str, int], int]:
        return {(topics.TRADES, p): offset for p, (offset, _) in self._saved.items()}

    def counters(self) -> dict[str, int]:
        """The builder's counts since start, for status and metrics."""
        b = self.builder
        return {
            "trades": b.n_trades,
            "late": b.n_late,
            "future": b.n_future,
            "ahead": b.n_ahead,
            "duplicates": b.n_duplicates,
            "replayed": b.n_replayed,
            "flat_skipped": b.n_flat_skipped,
            "pairs_in_memory": len(b.pairs()),
        }

    def last_event_ms(self) -> int | None:
        """Event time of the latest trade counted (a rejected one does not count)."""
        latest = self.builder.max_ts_ms
        return None if latest == NEVER else latest
