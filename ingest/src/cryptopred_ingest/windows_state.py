"""Mutable per-window, per-(pair, width) and per-pair state of the candle builder (internal)."""

from __future__ import annotations

from collections.abc import Sequence

NEVER = -(2**62)  # an event time before any trade


class Window:
    """One open window: OHLC with the (ts_ms, trade_id) keys of open and close, and sums."""

    __slots__ = (
        "close",
        "close_id",
        "close_ts",
        "dirty",
        "first_offset",
        "high",
        "low",
        "open",
        "open_id",
        "open_ts",
        "pvs",
        "qtys",
        "start_ms",
    )

    def __init__(self, start_ms: int, price: float, qty: float, ts: int, tid: int) -> None:
        self.start_ms = start_ms
        self.open = self.high = self.low = self.close = price
        self.open_ts = self.close_ts = ts
        self.open_id = self.close_id = tid
        self.qtys = [qty]  # every trade's qty and price * qty, for exact sums (math.fsum)
        self.pvs = [price * qty]
        self.dirty = True
        self.first_offset: int | None = None


class Lane:
    """One (pair, width): its open windows and where closing has got to."""

    __slots__ = (
        "candle_seconds",
        "closed_any",
        "last_emit_ms",
        "next_close_ms",
        "prev_close",
        "width_ms",
        "windows",
    )

    def __init__(self, candle_seconds: int) -> None:
        self.candle_seconds = candle_seconds
        self.width_ms = candle_seconds * 1000
        self.windows: dict[int, Window] = {}
        self.next_close_ms: int | None = None
        self.prev_close: float | None = None
        self.closed_any = False
        self.last_emit_ms = NEVER


class PairState:
    """A pair: its lanes, event-time watermark and where it was read from."""

    __slots__ = (
        "due_ms",
        "lanes",
        "max_ts_ms",
        "name",
        "partition",
        "replay_until",
        "wall_ms",
        "wm_ms",
    )

    def __init__(self, name: str, widths: Sequence[int]) -> None:
        self.name = name
        self.lanes = [Lane(w) for w in widths]
        self.max_ts_ms = NEVER
        self.wm_ms = NEVER
        self.due_ms = -NEVER  # smallest window end among the lanes' next windows to close
        self.wall_ms: int | None = None  # wall clock when max_ts_ms last advanced
        self.partition = 0
        self.replay_until: int | None = None  # offsets <= this were consumed before a restart
