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
- Open candles (`final=False`) are emitted by `tick` only (the runner ticks when caught up, so a
  replay of history emits finals only), at most once per `open_emit_interval_ms` of wall time
  per (pair, width); each window's final candle exactly once (`final=True`).

Offsets: pass each trade's Kafka (partition, offset). `checkpoint()` gives, per partition, the
offset that is safe to commit (the first trade of the oldest open window) and a small JSON state;
after a restart call `restore(state)` on a fresh builder and replay from the committed offset:
finals are reproduced identically and windows finalized before the restart are not re-emitted.
Each pair's trades must come from one partition (topic key = pair).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptopred.records import Candle, Trade, TradeWire
from cryptopred_ingest.windows_state import NEVER, Lane, PairState, Window

TradeLike = Trade | TradeWire

DEFAULT_GRACE_MS = 5_000
DEFAULT_OPEN_EMIT_INTERVAL_MS = 1_000


@dataclass(frozen=True, slots=True)
class Rejected:
    """A trade some width could not use; `candle_seconds` lists the widths that rejected it."""

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


@dataclass(frozen=True, slots=True)
class PartitionCheckpoint:
    """Commit `offset` (the next offset to read) together with `state` (JSON for `restore`)."""

    offset: int
    state: str


class CandleBuilder:
    """Builds candles of every width from trades; call `add`, `tick`, then `drain`."""

    def __init__(
        self,
        candle_seconds: Iterable[int] = (60,),
        grace_ms: int = DEFAULT_GRACE_MS,
        open_emit_interval_ms: int = DEFAULT_OPEN_EMIT_INTERVAL_MS,
    ) -> None:
        self.candle_seconds = tuple(sorted(set(candle_seconds)))
        if not self.candle_seconds or self.candle_seconds[0] <= 0:
            raise ValueError(f"candle_seconds must be positive, got {self.candle_seconds}")
        if grace_ms < 0 or open_emit_interval_ms < 0:
            raise ValueError("grace_ms and open_emit_interval_ms must be >= 0")
        self.grace_ms = grace_ms
        self.open_emit_interval_ms = open_emit_interval_ms
        self._pairs: dict[str, PairState] = {}
        self._consumed: dict[int, int] = {}
        self._now_ms: int | None = None
        self._out = Emitted()
        self.n_trades = 0
        self.n_late = 0
        self.n_replayed = 0

    # -- per trade -------------------------------------------------------------------------
    def add(self, trade: TradeLike, partition: int = 0, offset: int | None = None) -> None:
        """Take one trade; `offset` is its Kafka offset in `partition` (needed for checkpoints)."""
        ps = self._pairs.get(trade.pair)
        if ps is None:
            ps = self._pairs[trade.pair] = PairState(trade.pair, self.candle_seconds)
        ps.partition = partition
        if offset is not None:
            self._consumed[partition] = offset
        self.n_trades += 1
        ts = trade.ts_ms
        price = trade.price
        qty = trade.qty
        tid = -1 if trade.trade_id is None else trade.trade_id
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
        if late is not None:
            self._reject(trade, ps, tuple(late), partition, offset)
        if ts > ps.max_ts_ms:
            ps.max_ts_ms = ts
            ps.wall_ms = self._now_ms
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
    ) -> None:
        if off is not None and ps.replay_until is not None and off <= ps.replay_until:
            self.n_replayed += 1  # seen before the restart: finalized or reported then
            return
        self.n_late += 1
        self._out.rejected.append(Rejected(trade, "late", widths, partition, off))

    # -- closing ---------------------------------------------------------------------------
    def _close(self, ps: PairState) -> None:
        """Finalize every window (with trades or flat) whose end <= the pair's watermark."""
        for lane in ps.lanes:
            self._close_lane(ps, lane, ps.wm_ms)
        self._set_due(ps)

    @staticmethod
    def _set_due(ps: PairState) -> None:
        ends = [ln.next_close_ms + ln.width_ms for ln in ps.lanes if ln.next_close_ms is not None]
        ps.due_ms = min(ends, default=-NEVER)

    def _close_lane(self, ps: PairState, lane: Lane, wm: int) -> None:
        width = lane.width_ms
        nxt = lane.next_close_ms
        if nxt is None:
            return
        out = self._out.candles
        while nxt + width <= wm:
            w = lane.windows.pop(nxt, None)
            if w is not None:
                out.append(self._candle(ps.name, lane, w, final=True))
                lane.prev_close = w.close
            elif lane.prev_close is not None:
                p = lane.prev_close
                out.append(
                    Candle(
                        pair=ps.name,
                        candle_seconds=lane.candle_seconds,
                        window_start_ms=nxt,
                        window_end_ms=nxt + width,
                        open=p,
                        high=p,
                        low=p,
                        close=p,
                        volume=0.0,
                        vwap=p,
                        n_trades=0,
                        final=True,
                    )
                )
            lane.closed_any = True
            nxt += width
        lane.next_close_ms = nxt

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
        self._now_ms = now_ms

    def tick(self, now_ms: int) -> None:
        """Advance wall-clock time: close windows of idle pairs, flush rate-limited open updates.

        Call it about once a second, and with the batch's wall time before adding a batch.
        """
        self._now_ms = now_ms
        for ps in self._pairs.values():
            if ps.wall_ms is None:
                continue
            est_ms = ps.max_ts_ms + max(0, now_ms - ps.wall_ms)
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
            self._set_due(ps)

    def drain(self) -> Emitted:
        """Candles (open and final, in emission order) and rejected trades since the last drain."""
        out, self._out = self._out, Emitted()
        return out

    # -- offsets and restart ---------------------------------------------------------------
    def checkpoint(self) -> dict[int, PartitionCheckpoint]:
        """Per partition: the offset safe to commit and the state to persist with it."""
        result: dict[int, PartitionCheckpoint] = {}
        for partition, consumed in self._consumed.items():
            safe = consumed + 1
            pairs: dict[str, Any] = {}
            for ps in self._pairs.values():
                if ps.partition != partition:
                    continue
                lanes: dict[str, Any] = {}
                for lane in ps.lanes:
                    for w in lane.windows.values():
                        if w.first_offset is not None and w.first_offset < safe:
                            safe = w.first_offset
                    lanes[str(lane.candle_seconds)] = [
                        lane.next_close_ms,
                        lane.prev_close,
                        lane.closed_any,
                    ]
                pairs[ps.name] = {"max_ts_ms": ps.max_ts_ms, "wm_ms": ps.wm_ms, "lanes": lanes}
            state = json.dumps({"consumed": consumed, "pairs": pairs}, separators=(",", ":"))
            result[partition] = PartitionCheckpoint(safe, state)
        return result

    def safe_offsets(self) -> dict[int, int]:
        """Per partition, the offset safe to commit (replaying from it loses no open window)."""
        return {p: cp.offset for p, cp in self.checkpoint().items()}

    def release(self, partition: int) -> None:
        """Forget a revoked partition's pairs (after committing its checkpoint)."""
        for name in [n for n, ps in self._pairs.items() if ps.partition == partition]:
            del self._pairs[name]
        self._consumed.pop(partition, None)

    def restore(self, state: str, partition: int = 0) -> None:
        """Load one partition's checkpoint state into a fresh builder, before replaying it."""
        data = json.loads(state)
        consumed = int(data["consumed"])
        for name, pdata in data["pairs"].items():
            ps = self._pairs[name] = PairState(name, self.candle_seconds)
            ps.partition = partition
            ps.replay_until = consumed
            ps.max_ts_ms = int(pdata["max_ts_ms"])
            ps.wm_ms = int(pdata["wm_ms"])
            for lane in ps.lanes:
                saved = pdata["lanes"].get(str(lane.candle_seconds))
                if saved is None or saved[0] is None:
                    continue
                lane.next_close_ms = int(saved[0])
                lane.prev_close = None if saved[1] is None else float(saved[1])
                lane.closed_any = bool(saved[2])
            self._set_due(ps)
