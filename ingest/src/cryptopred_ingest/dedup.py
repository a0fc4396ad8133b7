"""Deduplication by (pair, trade_id) and the per-pair "last trade seen" cursor. Pure logic."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from cryptopred_core.records import Trade


@dataclass(frozen=True)
class LastSeen:
    trade_id: int
    ts_ms: int


class Dedup:
    """Remembers the last `capacity` trade ids per pair; `admit` is True once per id."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._seen: dict[str, set[int]] = {}
        self._order: dict[str, deque[int]] = {}
        self.last: dict[str, LastSeen] = {}
        self.duplicates = 0

    def admit(self, trade: Trade) -> bool:
        """True for a trade not seen before (trades without an id are always admitted)."""
        if trade.trade_id is None:
            return True
        seen = self._seen.setdefault(trade.pair, set())
        if trade.trade_id in seen:
            self.duplicates += 1
            return False
        order = self._order.setdefault(trade.pair, deque())
        seen.add(trade.trade_id)
        order.append(trade.trade_id)
        if len(order) > self.capacity:
            seen.discard(order.popleft())
        last = self.last.get(trade.pair)
        if last is None or trade.trade_id > last.trade_id:
            self.last[trade.pair] = LastSeen(trade.trade_id, trade.ts_ms)
        return True

    def fresh(self, trades: list[Trade]) -> list[Trade]:
        """The trades of `trades` not seen before, in order."""
        return [t for t in trades if self.admit(t)]


def repair_since_ns(last: LastSeen) -> int:
    """REST `since` for a gap after `last`: one millisecond early, duplicates are dropped."""
    return max(0, (last.ts_ms - 1) * 1_000_000)
