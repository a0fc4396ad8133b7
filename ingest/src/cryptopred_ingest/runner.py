"""Drives a batch source into a Publisher, optionally paced in event time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from cryptopred_ingest.pacing import Pacer
from cryptopred_ingest.publish import Batch, Publisher


def pump(
    batches: Iterable[Batch],
    publisher: Publisher,
    speed: float | None = None,
    stop: threading.Event | None = None,
    on_batch: Callable[[Batch], None] | None = None,
) -> None:
    """Publish every batch; with `speed` X, wait so event time runs X times real time."""
    stop = stop or threading.Event()
    pacer = Pacer(speed, stop=stop)
    for batch in batches:
        if stop.is_set():
            break
        if speed is None:
            publisher.batch(batch)
        else:
            for trade in batch.trades:
                pacer.wait_until(trade.ts_ms)
                if stop.is_set():
                    break
                publisher.trade(trade)
                publisher.producer.poll(0)
            for rej in batch.rejects:
                publisher.reject(rej.reason, rej.raw)
        if on_batch is not None:
            on_batch(batch)
    publisher.flush()
