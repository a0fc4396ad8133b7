"""One blocking call per key at a time, shared by every request that needs it meanwhile.

When a cached answer expires under load, every request arriving before it is refreshed would
otherwise make the same DB read from its own worker thread (at 500 requests/s and a 2 ms
read, a dozen reads, threads and connections per refresh). `SingleFlight.run` starts the
call once, in the event loop's executor, and lets the others await that same result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class SingleFlight(Generic[K, T]):
    """Deduplicates concurrent blocking calls by key (use from one event loop)."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[T]] = {}

    def running(self, key: K) -> bool:
        return key in self._running

    async def run(self, key: K, call: Callable[[], T]) -> T:
        """`call()`'s result (or exception), run in a worker thread unless a call for `key`
        is already running, whose result is then shared. A cancelled caller does not cancel
        the call the others wait for."""
        future = self._running.get(key)
        if future is None:
            future = asyncio.get_running_loop().run_in_executor(None, call)
            self._running[key] = future
            future.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(future)

    def _finished(self, key: K, future: asyncio.Future[T]) -> None:
        if self._running.get(key) is future:
            del self._running[key]
        if not future.cancelled():
            future.exception()  # retrieved: its waiters (if any are left) have it
