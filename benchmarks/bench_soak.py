"""Fault soak at scale: the stage actors on Ray catch up on N trades of 8 pairs, once without
faults and once with a fault every few seconds; prints the faults, the rows compared, the rows
lost or duplicated (goal: 0 and 0) and both throughputs.

Run: .venv/bin/python benchmarks/bench_soak.py [--trades 1000000] [--fault-every-s 3]
Starts its own tansu, PostgreSQL and a local Ray (stopped at the end). Faults, in turn: SIGKILL
a stage actor, an exception inside a stage (the test-only fault hook), PostgreSQL paused with
SIGSTOP, the broker paused with SIGSTOP. Duplicated trades (a source that re-sends its last 20
trades every 10,000) are produced with the trades and must not be counted twice.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_stream import closing_trades, synthetic_trades

from cryptopred.stack.parts import Broker, Postgres
from cryptopred_core import topics
from cryptopred_core.db import connect, create_schema, fetch_all
from cryptopred_core.kafka import ensure_topics, make_producer
from cryptopred_core.ports import free_port
from cryptopred_core.raycluster import keep_workers_in_this_env, secure_local_ray
from cryptopred_core.records import Trade, encode
from cryptopred_core.settings import Settings
from cryptopred_ingest.stream.actors import start_pipeline, stop_pipeline
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_ingest.windows import CandleBuilder
from cryptopred_testsupport.soak import kill_stage, paused, postgres_pid, raise_in_stage

STAGES = ("candles", "indicators", "sink")
Key = tuple[str, int]  # (pair, window_start_ms)


def reference(trades: list[Trade]) -> dict[Key, tuple[float, ...]]:
    builder = CandleBuilder([60], 5000, 10**9)
    for i, trade in enumerate(trades):
        builder.add(trade, 0, i)
    return {
        (c.pair, c.window_start_ms): (c.open, c.high, c.low, c.close, c.volume, c.n_trades)
        for c in builder.drain().candles
        if c.final
    }


def produce(settings: Settings, trades: list[Trade], duplicate_every: int) -> int:
    """Every trade (and the closing ones), plus the last 20 again after each `duplicate_every`."""
    producer = make_producer(settings, **{"linger.ms": 50, "batch.size": 1_000_000})
    duplicates = 0

    def send(trade: Trade) -> None:
        while True:
            try:
                producer.produce(topics.TRADES, key=trade.pair.encode(), value=encode(trade))
                return
            except BufferError:
                producer.poll(0.05)

    for i, trade in enumerate(trades, 1):
        send(trade)
        if duplicate_every and i % duplicate_every == 0:
            for again in trades[i - 20 : i]:
                send(again)
                duplicates += 1
    for trade in closing_trades(trades):
        send(trade)
    assert producer.flush(120) == 0
    return duplicates


def finals(settings: Settings, table: str) -> dict[Key, tuple[float, ...]]:
    with connect(settings.db_url, autocommit=True) as conn:
        rows = fetch_all(
            conn,
            f"SELECT pair, window_start_ms, open, high, low, close, volume, n_trades FROM {table} "
            "WHERE candle_seconds = 60 AND final",
        )
    return {
        (r["pair"], r["window_start_ms"]): (
            r["open"],
            r["high"],
            r["low"],
            r["close"],
            r["volume"],
            r["n_trades"],
        )
        for r in rows
    }


def run(
    settings: StreamSettings,
    trades: list[Trade],
    want: dict[Key, tuple[float, ...]],
    faults: Callable[[threading.Event], list[str]] | None,
) -> tuple[float, list[str], int]:
    """Catch up on `trades`; returns (trades/s, faults done, duplicates produced)."""
    stop = threading.Event()
    done: list[str] = []
    start_pipeline(settings)
    time.sleep(10)  # actors import and join their groups
    start = time.perf_counter()
    duplicates = produce(settings, trades, 10_000 if faults else 0)
    worker = None
    if faults is not None:
        worker = threading.Thread(target=lambda: done.extend(faults(stop)), daemon=True)
        worker.start()
    try:
        while True:  # every window final in both tables (the sink writes `candles`)
            got = min(
                len(finals(settings, table).keys() & want.keys())
                for table in ("candles", "technical_indicators")
            )
            if got >= len(want):
                return len(trades) / (time.perf_counter() - start), done, duplicates
            if time.perf_counter() - start > 1800:
                raise TimeoutError(f"only {got} of {len(want)} final rows after 1800 s")
            time.sleep(0.5)
    finally:
        stop.set()
        if worker is not None:
            worker.join(60)
        stop_pipeline(settings, say=lambda _: None)


def fault_cycle(
    settings: StreamSettings, broker: Broker, every_s: float
) -> Callable[[threading.Event], list[str]]:
    def pause(pid: int, seconds: float) -> None:
        with paused(pid):
            time.sleep(seconds)

    steps: list[tuple[str, Callable[[], Any]]] = []
    for stage in STAGES:
        steps.append((f"SIGKILL {stage}", lambda stage=stage: kill_stage(settings, stage)))
        steps.append(
            (f"raise in {stage}", lambda stage=stage: raise_in_stage(settings, stage, "bench"))
        )
    steps.append(("SIGSTOP PostgreSQL 5 s", lambda: pause(postgres_pid(settings), 5)))
    steps.append(("SIGSTOP broker 5 s", lambda: pause(broker.record().pid, 5)))  # type: ignore[union-attr]

    def loop(stop: threading.Event) -> list[str]:
        done = []
        for name, step in itertools.cycle(steps):
            if stop.wait(every_s):
                return done
            try:
                step()
                done.append(name)
            except Exception as exc:  # a stage may be restarting: count it as not injected
                done.append(f"{name} (not injected: {type(exc).__name__})")
        return done

    return loop


def compare(settings: Settings, want: dict[Key, tuple[float, ...]]) -> tuple[int, int, int]:
    """(rows compared, rows lost or short of trades, rows with trades counted twice)."""
    lost = duplicated = 0
    for table in ("candles", "technical_indicators"):
        got = finals(settings, table)
        for key, ref in want.items():
            row = got.get(key)
            if row is None or row[5] < ref[5]:
                lost += 1
            elif row[5] > ref[5] or row != ref:
                duplicated += 1
    return 2 * len(want), lost, duplicated


def main() -> None:
    keep_workers_in_this_env()
    secure_local_ray(Path(tempfile.mkdtemp(prefix="bench-ray-")))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--fault-every-s", type=float, default=3.0)
    args = parser.parse_args()
    import ray

    data_dir = tempfile.mkdtemp(prefix="bench-soak-")
    base = Settings(data_dir=data_dir, broker_port=free_port(), postgres_port=free_port())
    broker, postgres = Broker(base), Postgres(base)
    broker.start()
    postgres.start()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        settings = StreamSettings(
            **{
                **base.model_dump(),
                "kafka_bootstrap": broker.address,
                "database_url": postgres.address,
                "candle_seconds": [60],
                "ray_namespace": "bench-soak",
                "actor_num_cpus": 0.1,
                "fault_hooks": True,
                "db_timeout_s": 3.0,
                "db_retry_max_s": 4.0,
                "producer_timeout_ms": 3000,
                "consumer_max_poll_interval_ms": 10_000,
            }
        )
        with connect(settings.db_url) as conn:
            create_schema(conn, "postgres")
        trades = synthetic_trades(args.trades)
        want = reference(trades)
        results = {}
        for label, faulty in (("fault-free", False), ("with faults", True)):
            broker.stop()
            broker.start()
            ensure_topics(settings, topics.ALL_TOPICS, partitions=2)
            with connect(settings.db_url, autocommit=True) as conn:
                conn.execute(
                    "TRUNCATE candles, technical_indicators, stream_checkpoints, stream_pair_states"
                )
            s = settings.model_copy(update={"group_prefix": f"soak-{label[:4]}"})
            faults = fault_cycle(s, broker, args.fault_every_s) if faulty else None
            rate, done, duplicates = run(s, trades, want, faults)
            compared, lost, duplicated = compare(s, want)
            results[label] = rate
            print(f"{label}: {len(trades):,} trades of 8 pairs, {rate:,.0f} trades/s")
            if faulty:
                print(f"  faults injected: {len(done)}: {', '.join(done)}")
                print(f"  duplicate trades produced: {duplicates:,}")
            print(
                f"  rows compared: {compared:,}; lost: {lost}; "
                f"duplicated or different: {duplicated}"
            )
        ratio = results["with faults"] / results["fault-free"]
        print(f"throughput with faults / fault-free: {ratio:.2f}")
    finally:
        ray.shutdown()
        postgres.stop()
        broker.stop()


if __name__ == "__main__":
    main()
