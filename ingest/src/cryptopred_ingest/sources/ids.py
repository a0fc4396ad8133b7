"""Deterministic trade ids for inputs without an exchange id."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

RANK_SPAN = 1000  # trades sharing one 100 us tick before ids would collide


class TickIds:
    """id = (time in 100 us ticks) * 1000 + rank among consecutive trades with that tick.

    The same input always gets the same ids; ids grow with time like Kraken's do. Ids are
    unique for time-ordered input (Kraken's files are), which is what replays take.
    State carries across chunks, so chunking does not change the ids.
    """

    def __init__(self) -> None:
        self._last_tick = -1
        self._last_rank = -1

    def assign(self, ticks: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        n = len(ticks)
        if n == 0:
            return np.empty(0, dtype=np.int64)
        starts = np.ones(n, dtype=bool)
        starts[1:] = ticks[1:] != ticks[:-1]
        start_pos = np.flatnonzero(starts)
        run_index = np.cumsum(starts) - 1
        ranks = np.arange(n, dtype=np.int64) - start_pos[run_index]
        if ticks[0] == self._last_tick:
            first_run = run_index == 0
            ranks[first_run] += self._last_rank + 1
        self._last_tick = int(ticks[-1])
        self._last_rank = int(ranks[-1])
        ids: npt.NDArray[np.int64] = ticks * RANK_SPAN + np.minimum(ranks, RANK_SPAN - 1)
        return ids

    def one(self, tick: int) -> int:
        return int(self.assign(np.array([tick], dtype=np.int64))[0])
