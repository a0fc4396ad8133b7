"""Fault-injection soak of the streaming stages, shared by the soak test and its benchmark.

A live feed of several pairs (event time = wall time, after an hour-scale history) goes through
the real stage actors while a schedule of faults hits them: a stage actor SIGKILLed, an
exception raised inside a running stage (the test-only fault hook), PostgreSQL and the broker
paused with SIGSTOP, a stage's table renamed and renamed back, and bad records injected into
`trades` (duplicates, a trade a year ahead, a 2 MB garbage record, a 400-digit price). The
caller then compares the tables with a clean reference and reads `dlq`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil

from cryptopred_core import topics
from cryptopred_core.db import connect
from cryptopred_core.kafka import make_producer
from cryptopred_core.records import Trade, encode
from cryptopred_core.settings import Settings
from cryptopred_ingest.stream.actors import actor_name, pipeline_status, stream_ray

log = logging.getLogger(__name__)

YEAR_MS = 365 * 86_400_000
#: librdkafka's producer must accept the 2 MB garbage record
BIG_RECORD_BYTES = 2 * 1024 * 1024


@dataclass
class Injected:
    """A bad record put into `trades` on purpose, and the words its dead letter must carry."""

    what: str
    raw: bytes
    reason_has: str


@dataclass
class Feed:
    """Every good trade produced (the clean run's input) and the bad records injected."""

    trades: dict[str, list[Trade]] = field(default_factory=dict)
    injected: list[Injected] = field(default_factory=list)
    duplicates: int = 0

    def all_trades(self, pair: str) -> list[Trade]:
        return self.trades.get(pair, [])


def history(pair: str, seed: int, start_ms: int, end_ms: int, price: float) -> list[Trade]:
    """Trades about every 2 s from `start_ms` to `end_ms`, ids 0.. in time order."""
    rng = np.random.default_rng(seed)
    n = max(1, (end_ms - start_ms) // 2000)
    ts = np.sort(rng.integers(start_ms, end_ms, n))
    prices = price * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    qtys = rng.pareto(2.5, n) * 0.01 + 0.0001
    return [
        Trade(
            pair=pair,
            price=round(float(p), 2),
            qty=round(float(q), 6),
            side="buy" if i % 3 else "sell",
            trade_id=i,
            ts_ms=int(t),
            source="soak",
        )
        for i, (t, p, q) in enumerate(zip(ts, prices, qtys, strict=True))
    ]


class LiveFeed:
    """Produces `rate_per_s` trades per pair in real time (event time = wall time) in a thread,
    continuing each pair's ids and price from its history; `inject` adds bad records."""

    def __init__(self, settings: Settings, feed: Feed, rate_per_s: float, seed: int = 11) -> None:
        self.settings = settings
        self.feed = feed
        self.rate_per_s = rate_per_s
        self.rng = np.random.default_rng(seed)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        # the feed outlives a paused broker: its records wait up to 5 min, and a record that
        # still fails is counted (the clean run would then not be what the stages saw)
        self.failed: list[str] = []
        patient = {"message.timeout.ms": 300_000, "on_delivery": self._on_delivery}
        self.producer = make_producer(settings, **{"linger.ms": 5, **patient})
        self.big_producer = make_producer(
            settings,
            **{"message.max.bytes": BIG_RECORD_BYTES + 65_536, "linger.ms": 0, **patient},
        )
        self.thread = threading.Thread(target=self._run, name="soak-feed", daemon=True)

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed.append(str(err))

    def produce(self, trade: Trade) -> None:
        with self.lock:
            self.feed.trades.setdefault(trade.pair, []).append(trade)
            self.producer.produce(topics.TRADES, key=trade.pair.encode(), value=encode(trade))
            self.producer.poll(0)

    def _next(self, pair: str, ts_ms: int) -> Trade:
        last = self.feed.trades[pair][-1]
        price = round(last.price * float(np.exp(self.rng.normal(0, 0.0005))), 2)
        return Trade(
            pair=pair,
            price=price,
            qty=round(float(self.rng.pareto(2.5) * 0.01 + 0.0001), 6),
            side="buy" if self.rng.random() < 0.5 else "sell",
            trade_id=(last.trade_id or 0) + 1,
            ts_ms=ts_ms,
            source="soak",
        )

    def _run(self) -> None:
        pairs = list(self.feed.trades)
        interval_s = 1.0 / (self.rate_per_s * len(pairs))
        i = 0
        while not self.stop.wait(interval_s):
            pair = pairs[i % len(pairs)]
            i += 1
            self.produce(self._next(pair, time.time_ns() // 1_000_000))

    def start(self) -> None:
        self.thread.start()

    def close_windows(self, width_ms: int, grace_ms: int) -> None:
        """After the feed stopped: one trade per pair that closes all its windows (not part of
        the clean run: its own window stays open)."""
        with self.lock:
            for pair, trades in self.feed.trades.items():
                trade = closing_trade(pair, trades, width_ms, grace_ms)
                self.producer.produce(topics.TRADES, key=pair.encode(), value=encode(trade))

    def stop_feed(self, timeout_s: float = 30.0) -> None:
        self.stop.set()
        self.thread.join(timeout_s)

    def flush(self, timeout_s: float = 120.0) -> None:
        """Wait until every record was acknowledged."""
        for producer in (self.producer, self.big_producer):
            left = producer.flush(timeout_s)
            if left or self.failed:
                raise AssertionError(
                    f"the soak feed could not deliver {left} records; failed: {self.failed[:3]}"
                )

    # -- bad input --------------------------------------------------------------------------
    def inject_duplicates(self, pair: str, count: int) -> None:
        """Produce the pair's last `count` trades again (same ids: a restarted source)."""
        with self.lock:
            again = self.feed.trades[pair][-count:]
            for trade in again:
                self.producer.produce(topics.TRADES, key=pair.encode(), value=encode(trade))
            self.feed.duplicates += len(again)

    def inject_raw(self, what: str, pair: str, raw: bytes, reason_has: str) -> None:
        producer = self.big_producer if len(raw) > 900_000 else self.producer
        with self.lock:
            producer.produce(topics.TRADES, key=pair.encode(), value=raw)
            self.feed.injected.append(Injected(what, raw, reason_has))

    def inject_year_ahead(self, pair: str) -> None:
        trade = self._next(pair, time.time_ns() // 1_000_000 + YEAR_MS)
        self.inject_raw("a trade a year ahead", pair, encode(trade), "future")

    def inject_garbage(self, pair: str) -> None:
        self.inject_raw("2 MB of garbage", pair, b"\x00garbage" * (BIG_RECORD_BYTES // 8), "JSON")

    def inject_huge_price(self, pair: str) -> None:
        text = json.dumps(
            {
                "pair": pair,
                "price": 0,
                "qty": 1.0,
                "side": "buy",
                "trade_id": 10**9,
                "ts_ms": time.time_ns() // 1_000_000,
                "source": "soak",
            }
        ).replace('"price": 0', '"price": ' + "7" * 400)
        self.inject_raw("a 400-digit price", pair, text.encode(), "price")


# -- faults on processes ---------------------------------------------------------------------
def _tree(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """SIGSTOP a process and its children; SIGCONT them on exit."""
    procs = _tree(pid)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGCONT)


def postgres_pid(settings: Settings) -> int:
    """The postmaster's pid: the parent of this connection's backend."""
    with connect(settings.db_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        parent = psutil.Process(int(row[0])).parent()
    assert parent is not None
    return parent.pid


def stage_stats(settings: Any, stage: str) -> dict[str, Any]:
    for row in pipeline_status(settings, timeout_s=5):
        if row["actor"] == actor_name(stage, 0):
            return row
    return {}


def kill_stage(settings: Any, stage: str) -> int:
    """SIGKILL the stage actor's process (Ray restarts it); returns the killed pid."""
    pid = stage_stats(settings, stage).get("pid")
    if not pid:
        raise AssertionError(f"stage {stage} has no pid to kill: {stage_stats(settings, stage)}")
    os.kill(int(pid), signal.SIGKILL)
    return int(pid)


def raise_in_stage(settings: Any, stage: str, message: str) -> None:
    ray = stream_ray(settings)
    handle = ray.get_actor(actor_name(stage, 0), namespace=settings.ray_namespace)
    ray.get(handle.inject_fault.remote(message), timeout=30)


@contextlib.contextmanager
def renamed(settings: Settings, table: str) -> Iterator[None]:
    """The table renamed away, then back."""
    hidden = f"{table}_soak_hidden"
    with connect(settings.db_url, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{table}" RENAME TO "{hidden}"')
    try:
        yield
    finally:
        with connect(settings.db_url, autocommit=True) as conn:
            conn.execute(f'ALTER TABLE "{hidden}" RENAME TO "{table}"')


@dataclass
class Fault:
    """One scheduled fault: `at_s` after the live feed starts, `run` does it (blocking)."""

    at_s: float
    name: str
    run: Callable[[], None]


def run_schedule(faults: list[Fault], say: Callable[[str], None] = log.info) -> list[str]:
    """Run the faults in time order; returns a line per fault with when it happened."""
    start = time.monotonic()
    done = []
    for fault in sorted(faults, key=lambda f: f.at_s):
        delay = fault.at_s - (time.monotonic() - start)
        if delay > 0:
            time.sleep(delay)
        began = time.monotonic() - start
        fault.run()
        line = f"{began:6.1f} s  {fault.name} ({time.monotonic() - start - began:.1f} s)"
        say(line)
        done.append(line)
    return done


def closing_trade(pair: str, trades: list[Trade], width_ms: int, grace_ms: int) -> Trade:
    """A trade whose watermark closes every window holding `trades` (its own stays open)."""
    last = max(t.ts_ms for t in trades)
    ts_ms = last - last % width_ms + width_ms + grace_ms + 1000
    top = max((t.trade_id or 0) for t in trades)
    return Trade(
        pair=pair,
        price=trades[-1].price,
        qty=0.001,
        side="buy",
        trade_id=top + 1,
        ts_ms=ts_ms,
        source="soak",
    )
