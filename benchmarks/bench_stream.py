"""Streaming benchmark: candle stage rate, trades → final DB rows rate, live latency.

Run: .venv/bin/python benchmarks/bench_stream.py [--trades N]
Starts its own tansu and PostgreSQL on free ports in a temp dir (stopped at the end), writes
N synthetic trades of 8 pairs into `trades` (2 partitions), then measures:
1. the candle stage alone (one runner, trades → candles, checkpoints in the DB), trades/s;
2. the whole pipeline, one process per stage (candles, indicators, sink), from start until every
   final 60 s row is in the DB, trades/s;
3. live mode at 100 trades/s with event time = wall time: produce → the trade's candle and
   indicators updated in the DB (`technical_indicators` row), p50/p99 latency.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import threading
import time
from typing import Any

from cryptopred.stack.parts import Broker, Postgres
from cryptopred_core import topics
from cryptopred_core.db import connect, create_schema, fetch_all
from cryptopred_core.kafka import ensure_topics, make_producer
from cryptopred_core.pipeline.runner import StageRunner
from cryptopred_core.pipeline.writer import DbWriter
from cryptopred_core.ports import free_port
from cryptopred_core.records import Trade, encode
from cryptopred_core.settings import Settings
from cryptopred_ingest.sources.synthetic import generate
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_ingest.stream.stages import build_stage, group_id
from cryptopred_ingest.windows import CandleBuilder

PAIRS = ["BTC/USD", "BTC/EUR", "ETH/USD", "ETH/EUR", "SOL/USD", "SOL/EUR", "XRP/USD", "XRP/EUR"]


def synthetic_trades(n: int) -> list[Trade]:
    out: list[Trade] = []
    for batch in generate(PAIRS, days=30, seed=7):
        out.extend(batch.trades)
        if len(out) >= n:
            break
    return out[:n]


def closing_trades(trades: list[Trade]) -> list[Trade]:
    last = max(t.ts_ms for t in trades)
    ts_ms = last - last % 3_600_000 + 3_600_000 + 6_000
    return [
        Trade(pair=p, price=1.0, qty=0.001, side="buy", trade_id=10**12, ts_ms=ts_ms, source="b")
        for p in PAIRS
    ]


def produce(settings: Settings, trades: list[Trade]) -> float:
    producer = make_producer(settings, **{"linger.ms": 50, "batch.size": 1_000_000})
    start = time.perf_counter()
    for t in trades:
        while True:
            try:
                producer.produce(topics.TRADES, key=t.pair.encode(), value=encode(t))
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    return len(trades) / (time.perf_counter() - start)


def bench_candle_stage(settings: StreamSettings, n: int) -> float:
    runner = StageRunner(
        settings,
        build_stage("candles", settings),
        group_id(settings, "candles"),
        writer=DbWriter(settings.db_url, settings.db_dialect),
        batch_size=settings.stream_batch_size,
    )
    try:
        first: float | None = None
        while runner.stats.consumed < n:
            if runner.step() and first is None:
                first = time.perf_counter()
        assert first is not None
        return n / (time.perf_counter() - first)
    finally:
        runner.close()


def run_stage(stage: str, settings_json: str, stop: Any) -> None:
    settings = StreamSettings.model_validate_json(settings_json)
    runner = StageRunner(
        settings,
        build_stage(stage, settings),
        group_id(settings, stage),
        writer=DbWriter(settings.db_url, settings.db_dialect),
        batch_size=settings.stream_batch_size,
        tick_interval_ms=settings.tick_interval_ms,
    )
    event = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), event.set()), daemon=True).start()
    runner.run(event)


def start_stages(settings: StreamSettings) -> tuple[list[mp.Process], Any]:
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    procs = [
        ctx.Process(target=run_stage, args=(stage, settings.model_dump_json(), stop), daemon=True)
        for stage in ("candles", "indicators", "sink")
    ]
    for proc in procs:
        proc.start()
    return procs, stop


def stop_stages(procs: list[mp.Process], stop: Any) -> None:
    stop.set()
    for proc in procs:
        proc.join(30)
        if proc.is_alive():
            proc.terminate()


def expected_finals(trades: list[Trade]) -> int:
    builder = CandleBuilder([60], 5000, 10**9)
    for i, t in enumerate(trades):
        builder.add(t, 0, i)
    return sum(1 for c in builder.drain().candles if c.final)


def bench_pipeline(settings: StreamSettings, trades: list[Trade]) -> float:
    """Stages up and joined first; then the trades are produced and the clock runs until the
    last final 60 s row is in the DB (production overlaps processing, as it would live)."""
    want = expected_finals(trades)
    conn = connect(settings.db_url, autocommit=True)
    conn.execute("DELETE FROM technical_indicators")
    procs, stop = start_stages(settings)
    try:
        time.sleep(15)  # processes import and join their consumer groups
        start = time.perf_counter()
        produce(settings, [*trades, *closing_trades(trades)])
        while True:
            got = fetch_all(
                conn,
                "SELECT count(*) AS n FROM technical_indicators WHERE candle_seconds = 60 "
                "AND final",
            )[0]["n"]
            if got >= want:
                return len(trades) / (time.perf_counter() - start)
            if time.perf_counter() - start > 900:
                raise TimeoutError(f"only {got} of {want} final rows after 900 s")
            time.sleep(0.1)
    finally:
        stop_stages(procs, stop)
        conn.close()


def bench_live(settings: StreamSettings, seconds: float, rate: float) -> list[float]:
    procs, stop = start_stages(settings)
    conn = connect(settings.db_url, autocommit=True)
    producer = make_producer(settings, **{"linger.ms": 0})
    pair = "LIVE/USD"
    latencies: list[float] = []
    try:
        time.sleep(12)  # consumer groups join (about half of session.timeout.ms each)
        sent: dict[tuple[int, int], float] = {}  # (window_start_ms, n in window) -> sent at
        counts: dict[int, int] = {}
        seen: dict[int, int] = {}
        interval = 1 / rate
        next_at = time.perf_counter()
        end = next_at + seconds
        i = 0
        while time.perf_counter() < end or (sent and time.perf_counter() < end + 5):
            now = time.perf_counter()
            if now >= next_at and now < end:
                ts_ms = int(time.time() * 1000)
                start_ms = ts_ms - ts_ms % 60_000
                counts[start_ms] = counts.get(start_ms, 0) + 1
                trade = Trade(
                    pair=pair,
                    price=100.0 + (i % 7),
                    qty=1.0,
                    side="buy",
                    trade_id=i,
                    ts_ms=ts_ms,
                    source="bench",
                )
                producer.produce(topics.TRADES, key=pair.encode(), value=encode(trade))
                producer.poll(0)
                sent[(start_ms, counts[start_ms])] = time.perf_counter()
                i += 1
                next_at += interval
            rows = fetch_all(
                conn,
                "SELECT window_start_ms, n_trades FROM technical_indicators WHERE pair = %s "
                "AND candle_seconds = 60 ORDER BY window_start_ms DESC LIMIT 2",
                (pair,),
            )
            at = time.perf_counter()
            for row in rows:
                start_ms, n = int(row["window_start_ms"]), int(row["n_trades"])
                for k in range(seen.get(start_ms, 0) + 1, n + 1):
                    sent_at = sent.pop((start_ms, k), None)
                    if sent_at is not None:
                        latencies.append(at - sent_at)
                seen[start_ms] = max(seen.get(start_ms, 0), n)
            time.sleep(0.002)
        return latencies
    finally:
        stop_stages(procs, stop)
        conn.close()


def fresh_broker(broker: Broker, settings: StreamSettings) -> None:
    """The broker keeps topics in memory: restarting it gives empty topics."""
    broker.stop()
    broker.start()
    ensure_topics(settings, topics.ALL_TOPICS, partitions=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--live-seconds", type=float, default=30)
    parser.add_argument(
        "--candle-stage-runs",
        type=int,
        default=0,
        help="only the candle stage, this many runs, and their median (to compare checkouts)",
    )
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="bench-stream-")
    base = Settings(data_dir=data_dir, broker_port=free_port(), postgres_port=free_port())
    broker, postgres = Broker(base), Postgres(base)
    broker.start()
    postgres.start()
    try:
        settings = StreamSettings(
            **{
                **base.model_dump(),
                "kafka_bootstrap": broker.address,
                "database_url": postgres.address,
                "candle_seconds": [60],
            }
        )
        with connect(settings.db_url) as conn:
            create_schema(conn, "postgres")
        ensure_topics(settings, topics.ALL_TOPICS, partitions=2)
        trades = synthetic_trades(args.trades)
        rate = produce(settings, [*trades, *closing_trades(trades)])
        print(f"machine: {mp.cpu_count()} cores; {len(trades):,} trades, 8 pairs, 2 partitions")
        print(f"produce into trades:                 {rate:>10,.0f} trades/s")
        if args.candle_stage_runs:
            rates = [
                bench_candle_stage(
                    settings.model_copy(update={"group_prefix": f"r{i}"}), len(trades)
                )
                for i in range(args.candle_stage_runs)
            ]
            print(f"candle stage runs: {', '.join(f'{r:,.0f}' for r in rates)} trades/s")
            print(
                f"candle stage median:                 {statistics.median(rates):>10,.0f} trades/s"
            )
            return
        candle_rate = bench_candle_stage(
            settings.model_copy(update={"group_prefix": "b1"}), len(trades)
        )
        print(f"candle stage (1 runner):             {candle_rate:>10,.0f} trades/s")
        fresh_broker(broker, settings)
        pipe_rate = bench_pipeline(settings.model_copy(update={"group_prefix": "b2"}), trades)
        print(f"trades -> final rows in the DB:      {pipe_rate:>10,.0f} trades/s")
        fresh_broker(broker, settings)
        live = bench_live(
            settings.model_copy(update={"group_prefix": "b3", "open_emit_interval_ms": 0}),
            args.live_seconds,
            100.0,
        )
        if live:
            q = statistics.quantiles(live, n=100)
            print(
                f"live 100 trades/s, trade -> candle+indicators in DB: n={len(live)} "
                f"p50={q[49] * 1000:.0f} ms p99={q[98] * 1000:.0f} ms"
            )
        else:
            print("live: no latency samples")
    finally:
        postgres.stop()
        broker.stop()


if __name__ == "__main__":
    main()
