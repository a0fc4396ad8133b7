"""Replay 1,000,000 Kraken-CSV trades into a fresh tansu broker and print trades/s.

Run: .venv/bin/python benchmarks/bench_replay.py [--rows N]
Starts its own tansu on a free port with a temp data dir and stops it at the end.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from cryptopred.stack.parts import Broker
from cryptopred_core.kafka import ensure_topics
from cryptopred_core.ports import free_port
from cryptopred_core.settings import Settings
from cryptopred_core.topics import DLQ, TRADES
from cryptopred_ingest.cli import FAST_PRODUCER
from cryptopred_ingest.publish import make_publisher
from cryptopred_ingest.pump import pump
from cryptopred_ingest.sources.kraken_csv import CsvTrades


def write_csv(path: Path, rows: int, seed: int = 1) -> None:
    """A Kraken-style time-and-sales file: unix seconds (4 decimals), price, volume."""
    rng = np.random.default_rng(seed)
    ts = 1_767_225_600 + np.cumsum(rng.exponential(0.5, rows))
    price = 95_000 * np.exp(np.cumsum(rng.normal(0, 1e-4, rows)))
    qty = rng.lognormal(-4, 1.2, rows)
    with path.open("w") as handle:
        for start in range(0, rows, 100_000):
            end = min(rows, start + 100_000)
            handle.writelines(
                f"{t:.4f},{p:.1f},{q:.8f}\n"
                for t, p, q in zip(ts[start:end], price[start:end], qty[start:end], strict=True)
            )


def count_records(settings: Settings, topic: str, timeout_s: float = 120.0) -> int:
    """Records on `topic`, counted by reading it (tansu's high watermark lags the last batch)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "bench",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        count, at_eof = 0, set()
        deadline = time.monotonic() + timeout_s
        while len(at_eof) < len(meta.partitions) and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=0.5):
                if msg.error() is None:
                    count += 1
                    at_eof.discard(msg.partition())
                elif msg.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition())
        return count
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), broker_port=free_port())
        csv_path = Path(tmp) / "trades.csv"
        write_csv(csv_path, args.rows)
        broker = Broker(settings)
        broker.start()
        try:
            ensure_topics(settings, [TRADES, DLQ])
            publisher = make_publisher(settings, "bench-replay", **FAST_PRODUCER)
            start_s = time.perf_counter()
            pump(CsvTrades(csv_path, "BTC/USD", columnar=True).batches(), publisher)
            elapsed_s = time.perf_counter() - start_s
            on_topic = count_records(settings, TRADES)
            trades, rejects = publisher.counts.trades, publisher.counts.rejects
            del publisher  # close the producer before its broker goes
        finally:
            broker.stop()
    rate = trades / elapsed_s
    print(f"replayed {trades:,} trades ({rejects} rejects); read back {on_topic:,} from `trades`")
    print(f"elapsed {elapsed_s:.2f} s, {rate:,.0f} trades/s (parse + encode + produce + flush)")


if __name__ == "__main__":
    main()
