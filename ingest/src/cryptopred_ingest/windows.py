"""Event-time tumbling candle windows for every configured width at once (pure, Ray-free).

Rules, per pair and width:
- `window_start_ms = ts_ms - ts_ms % width_ms`; window [start, end) closes when the pair's
  watermark (max event time seen minus `grace_ms`) reaches `end`, or when `tick(now_ms)` finds the
  pair idle long enough (event time is assumed to advance with the wall clock while idle).
- A trade for a window that is still open updates it; a trade for a closed window is rejected
  with reason `late` for that width (other, wider windows may still take it).
- Empty windows between trades close as flat candles at the previous close.
- open = earliest trade by (ts_ms, trade_id), close = latest; volume and vwap use exact
  (`math.fsum`) sums, so final candles do not depend on arrival order within the grace.
- Time bounds: a trade more than `max_future_ms` after the wall clock (`observe_clock`/`tick`)
  is rejected `future`; one more than `max_jump_ms` after its pair's event time is rejected
  `ahead` unless it is within `max_jump_ms` of the wall clock (a live pair back after an
  outage). Old trades are never judged by the wall clock (replays of history go on). A pair's
  first trade has no event time to compare with: only the wall clock bounds it.
- One run of empty windows closes as at most `max_flat_candles` flat candles per width: the
  latest ones (right before the trade or watermark that ends the run); older ones are skipped.
- Dedup: a trade whose (pair, trade_id) was already counted is dropped (`n_duplicates`); ids
  are kept until the widest window holding them closed plus `ID_MARGIN_MS` of event time.
  Trades without an id are never deduplicated.
- Holds: `set_holds({pair: through_ms})` keeps idle closing of a pair from estimating its
  event time past `through_ms` (a live source still repairing a gap); trades close as usual.
- Open candles (`final=False`) are emitted by `tick` only (the runner ticks when caught up, so a
  replay of history emits finals only), at most once per `open_emit_interval_ms` of wall time
  per (pair, width); each window's final candle exactly once (`final=True`).

Offsets: pass each trade's Kafka (partition, offset). `checkpoint()` gives, per partition, the
offset that is safe to commit (the first trade of the oldest open window) and a JSON state;
after a restart call `restore(state)` on a fresh builder and replay from the committed offset:
finals are reproduced identically and windows finalized before the restart are not re-emitted.
`checkpoint(with_pairs=False)` plus `changed_pairs()` give the same split in a partition part
and one state per pair changed since the last call (`restore_pair` loads one back). A pair's
state keeps the ids of its closed windows still kept for dedup; open windows' ids come back
with their replayed trades. Replayed trades (offset <= the restored `consumed`) are not
deduplicated against the restored ids (they are the originals), later trades are.
`evict_idle` drops idle pairs without open windows; `load_pair` brings one back on its next
trade. Each pair's trades must come from one partition (topic key = pair).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptopred_core.records import Candle, Trade, TradeWire
from cryptopred_ingest.windows_checkpoint import PairCheckpoint, PairStore, PartitionCheckpoint
from cryptopred_ingest.windows_ids import ID_MARGIN_MS, forget_ids, is_duplicate, keep_id
from cryptopred_ingest.windows_state import NEVER, IdBlock, Lane, PairState, Window, set_due

__all__ = [
    "AHEAD",
    "FUTURE",
    "ID_MARGIN_MS",
    "LATE",
    "CandleBuilder",
    "Emitted",
    "PairCheckpoint",
    "PartitionCheckpoint",
    "Rejected",
]

TradeLike = Trade | TradeWire

DEFAULT_GRACE_MS = 5_000
DEFAULT_OPEN_EMIT_INTERVAL_MS = 1_000
DEFAULT_MAX_FUTURE_MS = 300_000
DEFAULT_MAX_JUMP_MS = 86_400_000
DEFAULT_MAX_FLAT_CANDLES = 10_080  # a week of minutes
LATE = "late"
FUTURE = "future"
AHEAD = "ahead"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A trade some width could not use; `candle_seconds` lists the widths that rejected it.

    `reason` is `late`, or `future: ...`/`ahead: ...` with the numbers that broke the bound.
    """

    trade: TradeLike
    reason: str
    candle_seconds: tuple[int, ...]
    partition: int
    offset: int | None


@dataclass(slots=True)
class Emitted:
    """What the builder produced since the last `drain()`."""

    candles: list[Candle] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


class CandleBuilder(PairStore):
    """Builds candles of every width from trades; call `add`, `tick`, then `drain`."""

    def __init__(
        self,
        candle_seconds: Iterable[int] = (60,),
        grace_ms: int = DEFAULT_GRACE_MS,
        open_emit_interval_ms: int = DEFAULT_OPEN_EMIT_INTERVAL_MS,
        max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
        max_jump_ms: int = DEFAULT_MAX_JUMP_MS,
        max_flat_candles: int = DEFAULT_MAX_FLAT_CANDLES,
    ) -> None:
        self.candle_seconds = tuple(sorted(set(candle_seconds)))
        if not self.candle_seconds or self.candle_seconds[0] <= 0:
            raise ValueError(f"candle_seconds must be positive, got {self.candle_seconds}")
        if grace_ms < 0 or open_emit_interval_ms < 0:
            raise ValueError("grace_ms and open_emit_interval_ms must be >= 0")
        if max_future_ms < 0 or max_jump_ms < 0 or max_flat_candles < 0:
            raise ValueError("max_future_ms, max_jump_ms and max_flat_candles must be >= 0")
        super().__init__()
        self.grace_ms = grace_ms
        self.open_emit_interval_ms = open_emit_interval_ms
        self.max_future_ms = max_future_ms
        self.max_jump_ms = max_jump_ms
        self.max_flat_candles = max_flat_candles
        self._widest_ms = self.candle_seconds[-1] * 1000
        self._holds: dict[str, int] = {}
        self._out = Emitted()
        self.n_trades = 0
        self.max_ts_ms = NEVER  # the latest event time of an accepted trade
        self.n_late = 0
        self.n_replayed = 0
        self.n_future = 0
        self.n_ahead = 0
        self.n_duplicates = 0
        self.n_flat_skipped = 0

    # -- per trade -------------------------------------------------------------------------
    def add(self, trade: TradeLike, partition: int = 0, offset: int | None = None) -> None:
        """Take one trade; `offset` is its Kafka offset in `partition` (needed for checkpoints)."""
        ps = self._pairs.get(trade.pair)
        if ps is None:
            ps = self._pair(trade.pair, partition, self._now_ms)
        ps.partition = partition
        if offset is not None:
            self._consumed[partition] = offset
        self.n_trades += 1
        ts = trade.ts_ms
        raw_id = trade.trade_id
        tid = -1 if raw_id is None else raw_id  # ids are >= 0
        if tid > ps.max_id:
            ps.max_id = tid  # a new id (the usual case: ids grow), no lookup needed
        elif raw_id is not None and is_duplicate(ps, raw_id, offset):
            self.n_duplicates += 1
            return
        # cheap pre-check against bounds that may be stale (too low); _out_of_bounds decides
        if ts > ps.bound_ms and self._out_of_bounds(trade, ps, partition, offset):
            return
        price = trade.price
        qty = trade.qty
        late: list[int] | None = None
        for lane in ps.lanes:
            start = ts - ts % lane.width_ms
            w = lane.windows.get(start)
            if w is None:
                if not self._opens(ps, lane, start):
                    if late is None:
                        late = []
                    late.append(lane.candle_seconds)
                    continue
                w = lane.windows[start] = Window(start, price, qty, ts, tid)
                w.first_offset = offset
            else:
                if ts < w.open_ts or (ts == w.open_ts and tid < w.open_id):
                    w.open, w.open_ts, w.open_id = price, ts, tid
                if ts > w.close_ts or (ts == w.close_ts and tid >= w.close_id):
                    w.close, w.close_ts, w.close_id = price, ts, tid
                if price > w.high:
                    w.high = price
                elif price < w.low:
                    w.low = price
                w.qtys.append(qty)  # sums (and the count) are taken when a candle is emitted
                w.pvs.append(price * qty)
                w.dirty = True
        ps.changed = True
        if late is not None:
            self._reject(trade, ps, tuple(late), partition, offset)
            if raw_id is not None and len(late) < len(ps.lanes):
                keep_id(ps, raw_id, ts, self._widest_ms)  # counted by some widths
        elif raw_id is not None:
            w.ids.append(raw_id)  # type: ignore[union-attr]  # the widest lane's window
        if ts > ps.max_ts_ms:
            ps.max_ts_ms = ts
            ps.wall_ms = self._now_ms
            if ts > self.max_ts_ms:
                self.max_ts_ms = ts
            wm = ts - self.grace_ms
            if wm > ps.wm_ms:
                ps.wm_ms = wm
                if wm >= ps.due_ms:
                    self._close(ps)

    def _opens(self, ps: PairState, lane: Lane, start: int) -> bool:
        """Whether a new window at `start` may open (it is not already closed)."""
        if start + lane.width_ms <= ps.wm_ms:
            return False
        nxt = lane.next_close_ms
        if nxt is None or (start < nxt and not lane.closed_any):
            lane.next_close_ms = start
            ps.due_ms = min(ps.due_ms, start + lane.width_ms)
            return True
        return start >= nxt

    def _reject(
        self,
        trade: TradeLike,
        ps: PairState,
        widths: tuple[int, ...],
        partition: int,
        off: int | None,
        reason: str = LATE,
    ) -> None:
        if off is not None and ps.replay_until is not None and off <= ps.replay_until:
            self.n_replayed += 1  # seen before the restart: finalized or reported then
            return
        if reason == LATE:
            self.n_late += 1
        self._out.rejected.append(Rejected(trade, reason, widths, partition, off))

    def _out_of_bounds(
        self, trade: TradeLike, ps: PairState, partition: int, off: int | None
    ) -> bool:
        """Reject (and say so) a trade too far after the wall clock or its pair's event time."""
        ts, now = trade.ts_ms, self._now_ms
        # both bounds only grow (event time and the wall clock advance): refresh them; a pair's
        # first trade sets no bound (the next trade is checked against its event time)
        if ps.max_ts_ms != NEVER:
            ps.bound_ms = ps.max_ts_ms + self.max_jump_ms
            if now is not None:
                ps.bound_ms = min(ps.bound_ms, now + self.max_future_ms)
            if ts <= ps.bound_ms:
                return False
        if now is not None and ts - now > self.max_future_ms:
            self.n_future += 1
            reason = (
                f"{FUTURE}: ts_ms {ts} is {(ts - now) / 1000:.0f} s after the wall clock "
                f"(limit {self.max_future_ms / 1000:.0f} s)"
            )
        elif (
            ps.max_ts_ms != NEVER
            and ts - ps.max_ts_ms > self.max_jump_ms
            and (now is None or now - ts > self.max_jump_ms)
        ):
            self.n_ahead += 1
            reason = (
                f"{AHEAD}: ts_ms {ts} is {(ts - ps.max_ts_ms) / 1000:.0f} s after the pair's "
                f"event time {ps.max_ts_ms} (limit {self.max_jump_ms / 1000:.0f} s)"
            )
        else:
            return False
        self._reject(trade, ps, self.candle_seconds, partition, off, reason)
        return True

    # -- closing ---------------------------------------------------------------------------
    def _close(self, ps: PairState) -> None:
        """Finalize every window (with trades or flat) whose end <= the pair's watermark."""
        for lane in ps.lanes:
            self._close_lane(ps, lane, ps.wm_ms)
        set_due(ps)
        ps.changed = True
        if ps.id_blocks or ps.restored_blocks:
            forget_ids(ps)

    def _close_lane(self, ps: PairState, lane: Lane, wm: int) -> None:
        width = lane.width_ms
        nxt = lane.next_close_ms
        if nxt is None:
            return
        out = self._out.candles
        widest = lane is ps.lanes[-1]
        while nxt + width <= wm:
            w = lane.windows.pop(nxt, None)
            lane.closed_any = True
            if w is not None:
                out.append(self._candle(ps.name, lane, w, final=True))
                lane.prev_close = w.close
                if widest and w.ids:
                    ps.id_blocks.append(IdBlock(nxt + width, w.ids, w.ids_synced))
                nxt += width
                continue
            # a run of empty windows, up to the next window with trades or the watermark
            n_empty = (wm - nxt) // width
            if lane.windows:
                n_empty = min(n_empty, (min(lane.windows) - nxt) // width)
            if n_empty > self.max_flat_candles:
                skipped = n_empty - self.max_flat_candles
                self.n_flat_skipped += skipped
                nxt += skipped * width
                n_empty = self.max_flat_candles
            p = lane.prev_close
            for _ in range(n_empty):
                if p is not None:
                    out.append(self._flat(ps.name, lane, nxt, p))
                nxt += width
        lane.next_close_ms = nxt

    @staticmethod
    def _flat(pair: str, lane: Lane, start_ms: int, price: float) -> Candle:
        return Candle.flat(pair, lane.candle_seconds, start_ms, price)

    @staticmethod
    def _candle(pair: str, lane: Lane, w: Window, final: bool) -> Candle:
        volume = math.fsum(w.qtys)
        return Candle(
            pair=pair,
            candle_seconds=lane.candle_seconds,
            window_start_ms=w.start_ms,
            window_end_ms=w.start_ms + lane.width_ms,
            open=w.open,
            high=w.high,
            low=w.low,
            close=w.close,
            volume=volume,
            vwap=math.fsum(w.pvs) / volume,
            n_trades=len(w.qtys),
            final=final,
        )

    def _emit_open(self, ps: PairState, lane: Lane, w: Window) -> None:
        w.dirty = False
        self._out.candles.append(self._candle(ps.name, lane, w, final=False))

    def observe_clock(self, now_ms: int) -> None:
        """Record the wall time of the trades about to be added, without closing anything.

        Idle closing (`tick`) measures how long a pair has been quiet from this time, so call
        it before each batch even while catching up, when `tick` is not called.
        """
        if self._now_ms is None:  # bounds set without a clock: check against it from now on
            for ps in self._pairs.values():
                ps.bound_ms = NEVER
        self._now_ms = now_ms

    def tick(self, now_ms: int) -> None:
        """Advance wall-clock time: close windows of idle pairs, flush rate-limited open updates.

        Call it about once a second, and with the batch's wall time before adding a batch.
        """
        self.observe_clock(now_ms)
        holds = self._holds
        for ps in self._pairs.values():
            if ps.wall_ms is None:
                continue
            est_ms = ps.max_ts_ms + max(0, now_ms - ps.wall_ms)
            if holds:
                through_ms = holds.get(ps.name)
                if through_ms is not None and est_ms > through_ms:
                    est_ms = max(through_ms, ps.max_ts_ms)  # the source is still repairing
            wm = est_ms - self.grace_ms
            if wm > ps.wm_ms:
                ps.wm_ms = wm
                if wm >= ps.due_ms:
                    self._close(ps)
            for lane in ps.lanes:
                if now_ms < lane.last_emit_ms + self.open_emit_interval_ms:
                    continue
                dirty = [w for w in lane.windows.values() if w.dirty]
                if dirty:
                    lane.last_emit_ms = now_ms
                    for w in sorted(dirty, key=lambda x: x.start_ms):
                        self._emit_open(ps, lane, w)

    def finish(self) -> None:
        """End of a bounded stream: finalize every open window now (no more trades will come)."""
        for ps in self._pairs.values():
            for lane in ps.lanes:
                if lane.windows:
                    end_ms = max(lane.windows) + lane.width_ms
                    ps.wm_ms = max(ps.wm_ms, end_ms)
                    self._close_lane(ps, lane, end_ms)
            set_due(ps)
            ps.changed = True

    def set_holds(self, holds: dict[str, int]) -> None:
        """Per pair, the event time idle closing may not estimate past (replaces the last)."""
        self._holds = dict(holds)

    def drain(self) -> Emitted:
        """Candles (open and final, in emission order) and rejected trades since the last drain."""
        out, self._out = self._out, Emitted()
        return out
