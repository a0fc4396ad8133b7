"""Pumps a batch source into a Publisher, optionally paced in event time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from cryptopred_ingest.pacing import Pacer
from cryptopred_ingest.publish import Batch, Publisher


def pump(
    batches: Iterable[Batch],
    publisher: Publisher,
    speed: float | None = None,
    stop: threading.Event | None = None,
    on_batch: Callable[[Batch], None] | None = None,
    wall_clock: bool = False,
    now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
) -> None:
    """Publish every batch; with `speed` X, wait so event time runs X times real time; with
    `wall_clock`, publish each trade once the wall clock reaches its event time."""
    stop = stop or threading.Event()
    pacer = Pacer(speed, stop=stop)

    def paced(ts_ms: int) -> bool:
        pacer.wait_until(ts_ms)
        return stop.is_set()

    def on_wall_clock(ts_ms: int) -> bool:
        delay_ms = ts_ms - now_ms()
        return stop.wait(delay_ms / 1000) if delay_ms > 0 else stop.is_set()

    for batch in batches:
        if stop.is_set():
            break
        if wall_clock and batch.trades and batch.trades[-1].ts_ms > now_ms():
            _one_by_one(batch, publisher, on_wall_clock)
        elif speed is None or wall_clock:
            publisher.batch(batch)
        else:
            _one_by_one(batch, publisher, paced)
        if on_batch is not None:
            on_batch(batch)
    publisher.flush()


def _one_by_one(batch: Batch, publisher: Publisher, wait: Callable[[int], bool]) -> None:
    """Publish trade by trade, each after `wait(ts_ms)` (True: stop now)."""
    for trade in batch.trades:
        if wait(trade.ts_ms):
            break
        publisher.trade(trade)
        publisher.producer.poll(0)
    for rej in batch.rejects:
        publisher.reject(rej.reason, rej.raw)
