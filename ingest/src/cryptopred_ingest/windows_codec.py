"""A pair's candle-builder state as compact JSON, and back (internal to `windows`).

A pair's state: its event time and watermark, per width where closing has got to (next window
to close, previous close, whether any window closed), and the trade ids of closed windows that
are still kept for dedup, as `[end_ms, [[lo, hi], ...]]` blocks (sequential ids give one run).
Open windows are not in the state, their trades' ids neither: the committed offset is at or
before their first trade, so the replay after a restart counts them (and their ids) again.
"""

from __future__ import annotations

import json
from typing import Any

from cryptopred_ingest.windows_state import IdBlock, PairState, expand_runs, id_runs


def pair_state_data(ps: PairState) -> dict[str, Any]:
    """The JSON-ready state of one pair."""
    lanes: dict[str, Any] = {}
    for lane in ps.lanes:
        lanes[str(lane.candle_seconds)] = [lane.next_close_ms, lane.prev_close, lane.closed_any]
    data: dict[str, Any] = {"max_ts_ms": ps.max_ts_ms, "wm_ms": ps.wm_ms, "lanes": lanes}
    blocks = [*(ps.restored_blocks or ()), *ps.id_blocks]
    if blocks:
        data["ids"] = [[b.end_ms, _runs(b)] for b in blocks]
    return data


def _runs(block: IdBlock) -> list[list[int]]:
    """A closed window's ids as runs, encoded once (they no longer change)."""
    if block.runs is None or block.runs_of != len(block.ids):
        block.runs, block.runs_of = id_runs(block.ids), len(block.ids)
    return block.runs


def pair_state_json(ps: PairState) -> str:
    """`pair_state_data` as compact JSON."""
    return json.dumps(pair_state_data(ps), separators=(",", ":"))


def load_pair_state(ps: PairState, data: dict[str, Any], replay_until: int | None) -> None:
    """Fill a fresh PairState from `pair_state_data` output.

    With `replay_until`, trades at offsets up to it are being replayed: their ids stay out of
    dedup until the replay has ended (they are the originals, counted again in open windows).
    """
    ps.replay_until = replay_until
    ps.max_ts_ms = int(data["max_ts_ms"])
    ps.wm_ms = int(data["wm_ms"])
    for lane in ps.lanes:
        saved = data["lanes"].get(str(lane.candle_seconds))
        if saved is None or saved[0] is None:
            continue
        lane.next_close_ms = int(saved[0])
        lane.prev_close = None if saved[1] is None else float(saved[1])
        lane.closed_any = bool(saved[2])
    blocks = [IdBlock(int(end), expand_runs(runs)) for end, runs in data.get("ids", ())]
    if not blocks:
        return
    ps.max_id = max((max(b.ids) for b in blocks if b.ids), default=ps.max_id)
    if replay_until is None:
        ps.id_blocks = blocks
    else:
        ps.restored_blocks = blocks
