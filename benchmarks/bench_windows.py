"""Micro-benchmark of the pure candle builder: trades/s for 1,000,000 synthetic trades, 8 pairs.

Also the candle stage's cycle without a broker or DB (decode, add, candles, checkpoint rows),
batches of 5,000 as the runner feeds it, the wall clock after every trade (a replay).

Run: `.venv/bin/python benchmarks/bench_windows.py [n_trades]`.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from cryptopred_core import topics
from cryptopred_core.pipeline.stage import Emit, Inbound
from cryptopred_core.records import Trade, encode
from cryptopred_ingest.stream.candles import CandleStage
from cryptopred_ingest.windows import CandleBuilder

PAIRS = ("BTC/USD", "BTC/EUR", "ETH/USD", "ETH/EUR", "SOL/USD", "SOL/EUR", "XRP/USD", "XRP/EUR")


def synthetic_trades(n: int, seed: int = 7) -> list[Trade]:
    """`n` trades over 8 pairs, ~100 trades/s per pair, some out of order within 2 s."""
    rng = np.random.default_rng(seed)
    start_ms = 1_700_000_000_000
    ts = start_ms + np.cumsum(rng.exponential(1000 / (100 * len(PAIRS)), n)).astype(np.int64)
    ts = ts - rng.integers(0, 2000, n) * (rng.random(n) < 0.05)
    pair_idx = rng.integers(0, len(PAIRS), n)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))
    qtys = rng.uniform(0.001, 2.0, n)
    sides = rng.random(n) < 0.5
    return [
        Trade(
            pair=PAIRS[p],
            price=float(pr),
            qty=float(q),
            side="buy" if s else "sell",
            trade_id=i,
            ts_ms=int(t),
            source="bench",
        )
        for i, (p, pr, q, s, t) in enumerate(
            zip(pair_idx.tolist(), prices, qtys, sides.tolist(), ts.tolist(), strict=True)
        )
    ]


def run(trades: list[Trade], widths: list[int]) -> float:
    builder = CandleBuilder(widths)
    t0 = time.perf_counter()
    n_candles = 0
    for i, trade in enumerate(trades):
        builder.add(trade, 0, i)
        if i % 1000 == 999:
            n_candles += len(builder.drain().candles)
    n_candles += len(builder.drain().candles)
    seconds = time.perf_counter() - t0
    rate = len(trades) / seconds
    print(f"widths={widths}: {rate:,.0f} trades/s ({seconds:.2f} s, {n_candles:,} candles out)")
    return rate


def run_stage(trades: list[Trade], widths: list[int], batch: int = 5_000) -> float:
    messages = [
        Inbound(topics.TRADES, 0, i, None, encode(t), t.ts_ms) for i, t in enumerate(trades)
    ]
    stage = CandleStage("postgresql://unused", "bench", widths, 5_000, 250)  # no DB call here
    now_ms = trades[-1].ts_ms + 1_000
    t0 = time.perf_counter()
    n_rows = 0
    for i in range(0, len(messages), batch):
        out = Emit()
        stage.handle_batch(messages[i : i + batch], now_ms, out)
        stage.end_batch(now_ms, out)
        n_rows += len(out)
        now_ms += 5
    seconds = time.perf_counter() - t0
    rate = len(trades) / seconds
    print(f"stage widths={widths}: {rate:,.0f} trades/s ({seconds:.2f} s, {n_rows:,} out)")
    return rate


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    trades = synthetic_trades(n)
    run(trades, [60])
    run(trades, [60, 300, 3600])
    run_stage(trades, [60, 300, 3600])


if __name__ == "__main__":
    main()
