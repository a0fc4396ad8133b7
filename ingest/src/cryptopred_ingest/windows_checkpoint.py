"""The candle builder's pairs: checkpoints per partition and per pair, restore, eviction.

A partition's checkpoint is the offset safe to commit (the first trade of the oldest open
window of its pairs) and `{"consumed": offset}`; with `with_pairs` it also carries every pair's
state (the older, one-row format, still accepted by `restore`). `changed_pairs` gives the state
of each pair changed since its last call, to be stored beside the partition row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptopred_ingest.windows_codec import load_pair_state, pair_state_data, pair_state_json
from cryptopred_ingest.windows_state import PairState, set_due


@dataclass(frozen=True, slots=True)
class PartitionCheckpoint:
    """Commit `offset` (the next offset to read) together with `state` (JSON for `restore`)."""

    offset: int
    state: str


@dataclass(frozen=True, slots=True)
class PairCheckpoint:
    """One pair's state (JSON for `restore_pair`), read from `partition`."""

    pair: str
    partition: int
    state: str


class PairStore:
    """The pairs of a candle builder, by name, with where each partition was consumed to."""

    candle_seconds: tuple[int, ...]

    def __init__(self) -> None:
        self._pairs: dict[str, PairState] = {}
        self._evicted: dict[str, int] = {}  # pair -> partition; the caller keeps the state
        self._consumed: dict[int, int] = {}
        self._now_ms: int | None = None  # the wall clock, from the builder's observe_clock/tick
        # loads an evicted pair's last state (JSON from `changed_pairs`), None if there is none
        self.load_pair: Callable[[str], str | None] | None = None

    def _pair(self, name: str, partition: int, now_ms: int | None) -> PairState:
        """The state of a pair not in memory: loaded back if it was evicted, else new."""
        ps = self._pairs[name] = PairState(name, self.candle_seconds)
        ps.partition = partition
        ps.idle_since_ms = now_ms
        if self._evicted.pop(name, None) is not None and self.load_pair is not None:
            state = self.load_pair(name)
            if state is not None:
                load_pair_state(ps, json.loads(state), None)
                set_due(ps)
        return ps

    @staticmethod
    def _safe_offset(ps: PairState) -> int | None:
        firsts = [
            w.first_offset
            for lane in ps.lanes
            for w in lane.windows.values()
            if w.first_offset is not None
        ]
        return min(firsts, default=None)

    def checkpoint(self, with_pairs: bool = True) -> dict[int, PartitionCheckpoint]:
        """Per partition: the offset safe to commit and the state to persist with it."""
        safe = {p: consumed + 1 for p, consumed in self._consumed.items()}
        pairs: dict[int, dict[str, Any]] = {p: {} for p in self._consumed}
        for ps in self._pairs.values():
            if ps.partition not in safe:
                continue
            if ps.changed:
                ps.safe_offset = self._safe_offset(ps)
            if ps.safe_offset is not None and ps.safe_offset < safe[ps.partition]:
                safe[ps.partition] = ps.safe_offset
            if with_pairs:
                pairs[ps.partition][ps.name] = pair_state_data(ps)
        result: dict[int, PartitionCheckpoint] = {}
        for partition, consumed in self._consumed.items():
            data: dict[str, Any] = {"consumed": consumed}
            if with_pairs:
                data["pairs"] = pairs[partition]
            result[partition] = PartitionCheckpoint(
                safe[partition], json.dumps(data, separators=(",", ":"))
            )
        return result

    def changed_pairs(self) -> list[PairCheckpoint]:
        """The state of every pair changed since the last call (call after `checkpoint`)."""
        out: list[PairCheckpoint] = []
        for ps in self._pairs.values():
            if ps.changed:
                ps.changed = False
                out.append(PairCheckpoint(ps.name, ps.partition, pair_state_json(ps)))
        return out

    def safe_offsets(self) -> dict[int, int]:
        """Per partition, the offset safe to commit (replaying from it loses no open window)."""
        return {p: cp.offset for p, cp in self.checkpoint(with_pairs=False).items()}

    def release(self, partition: int) -> None:
        """Forget a revoked partition's pairs (after committing its checkpoint)."""
        for name in [n for n, ps in self._pairs.items() if ps.partition == partition]:
            del self._pairs[name]
        for name in [n for n, p in self._evicted.items() if p == partition]:
            del self._evicted[name]
        self._consumed.pop(partition, None)

    def restore(self, state: str, partition: int = 0) -> int:
        """Load one partition's checkpoint state into a fresh builder, before replaying it.

        Returns the partition's `consumed` offset (pass it to `restore_pair` as replay_until).
        """
        data = json.loads(state)
        consumed = int(data["consumed"])
        for name, pdata in data.get("pairs", {}).items():
            ps = self._restore_one(name, partition, pdata, consumed)
            ps.changed = True  # the one-row format: write the pair's own row next time
        return consumed

    def restore_pair(self, name: str, partition: int, state: str, replay_until: int) -> None:
        """Load one pair's state (from `changed_pairs`) before replaying its partition."""
        self._restore_one(name, partition, json.loads(state), replay_until)

    def _restore_one(
        self, name: str, partition: int, data: dict[str, Any], replay_until: int
    ) -> PairState:
        ps = self._pairs[name] = PairState(name, self.candle_seconds)
        ps.partition = partition
        ps.idle_since_ms = self._now_ms
        load_pair_state(ps, data, replay_until)
        set_due(ps)
        ps.changed = False
        return ps

    def evict_idle(self, now_ms: int, idle_ms: int) -> list[str]:
        """Drop pairs with no open window, saved state and no trade for `idle_ms` of wall time.

        Their last `changed_pairs` state must be kept by the caller: `load_pair` brings it back
        when a trade of theirs arrives.
        """
        evicted: list[str] = []
        for ps in self._pairs.values():
            since_ms = ps.wall_ms if ps.wall_ms is not None else ps.idle_since_ms
            if since_ms is None:
                ps.idle_since_ms = since_ms = now_ms  # restored: idle from now on
            if ps.changed or now_ms - since_ms < idle_ms:
                continue
            if any(lane.windows for lane in ps.lanes):
                continue
            evicted.append(ps.name)
        for name in evicted:
            self._evicted[name] = self._pairs.pop(name).partition
        return evicted

    def pairs(self) -> Sequence[str]:
        """Names of the pairs in memory."""
        return list(self._pairs)
