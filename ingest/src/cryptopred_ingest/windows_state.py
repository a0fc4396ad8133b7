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
        "ids",
        "ids_synced",
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
        self.ids: list[int] = []  # trade ids counted (kept in the widest lane's windows only)
        self.ids_synced = 0  # how many of `ids` are in the pair's `seen` set


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
        "bound_ms",
        "changed",
        "due_ms",
        "id_blocks",
        "idle_since_ms",
        "lanes",
        "max_id",
        "max_ts_ms",
        "name",
        "partition",
        "replay_until",
        "restored_blocks",
        "safe_offset",
        "seen",
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
        self.changed = True  # state differs from the last checkpointed one
        self.safe_offset: int | None = None  # first offset of the oldest open window
        self.idle_since_ms: int | None = None  # wall time of the last trade (or of loading)
        # Trade ids counted, for dedup: blocks of the widest lane's windows (open or closed
        # within the margin); `seen` holds them as a set, filled lazily from the blocks.
        # trades after this are checked against the time bounds (a lower bound of them)
        self.bound_ms = NEVER
        self.max_id = -(2**63)
        self.id_blocks: list[IdBlock] = []  # closed windows' blocks, oldest first
        self.seen: set[int] = set()
        # blocks from the checkpoint, kept apart (out of `seen`) until the replay has ended
        self.restored_blocks: list[IdBlock] | None = None


class IdBlock:
    """Trade ids counted in one window of the widest lane; `synced` of them are in `seen`."""

    __slots__ = ("end_ms", "ids", "runs", "runs_of", "synced")

    def __init__(self, end_ms: int, ids: list[int], synced: int = 0) -> None:
        self.end_ms = end_ms
        self.ids = ids
        self.synced = synced
        self.runs: list[list[int]] | None = None  # `ids` as runs, for checkpoints
        self.runs_of = 0  # how many ids `runs` encodes


def id_runs(ids: list[int]) -> list[list[int]]:
    """Ids as sorted, merged `[lo, hi]` runs (sequential ids give one run)."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and i <= runs[-1][1] + 1:
            if i > runs[-1][1]:
                runs[-1][1] = i
        else:
            runs.append([i, i])
    return runs


def expand_runs(runs: list[list[int]]) -> list[int]:
    """The ids of `[lo, hi]` runs."""
    return [i for lo, hi in runs for i in range(int(lo), int(hi) + 1)]


def set_due(ps: PairState) -> None:
    """Recompute the smallest end among the lanes' next windows to close."""
    ends = [ln.next_close_ms + ln.width_ms for ln in ps.lanes if ln.next_close_ms is not None]
    ps.due_ms = min(ends, default=-NEVER)
