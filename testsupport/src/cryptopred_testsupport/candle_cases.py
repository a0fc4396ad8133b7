"""Trades and a pandas reference for the candle builder tests (ingest/tests/unit/test_windows*)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from cryptopred_core.records import Candle, Trade
from cryptopred_ingest.windows import CandleBuilder

T0_MS = 1_700_000_040_000  # not aligned to an hour, so the first windows are partial
GRACE_MS = 5_000
WIDTHS = (60, 300, 3600)
Key = tuple[str, int, int]


def make_trades(
    n: int, pairs: Sequence[str] = ("BTC/USD", "ETH/USD"), seed: int = 1
) -> list[Trade]:
    """Time-sorted trades with gaps of several minutes and many shared timestamps."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(400, n)
    gaps[rng.random(n) < 0.003] = 400_000  # quiet spells -> flat candles
    gaps[rng.random(n) < 0.2] = 0  # multi-fill sweeps share a timestamp
    ts = T0_MS + np.cumsum(gaps).astype(np.int64)
    prices = 50.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    qtys = rng.uniform(0.001, 3.0, n)
    pair_idx = rng.integers(0, len(pairs), n)
    return [
        Trade(
            pair=pairs[p],
            price=round(float(prices[i]), 4),
            qty=float(qtys[i]),
            side="buy" if i % 3 else "sell",
            trade_id=i,
            ts_ms=int(ts[i]),
            source="test",
        )
        for i, p in enumerate(pair_idx.tolist())
    ]


def shuffle_within_grace(trades: list[Trade], seed: int = 2) -> list[Trade]:
    """Arrival order by ts + U[0, grace): every trade arrives before its window can close."""
    rnd = random.Random(seed)
    keyed = [(t.ts_ms + rnd.randrange(GRACE_MS), i, t) for i, t in enumerate(trades)]
    return [t for _, _, t in sorted(keyed)]


def reference(trades: Iterable[Trade], candle_seconds: int) -> dict[Key, Candle]:
    """Final candles by pandas: event-time resample, label/closed left, flat-filled gaps."""
    df = pd.DataFrame(
        [(t.pair, t.ts_ms, t.trade_id, t.price, t.qty) for t in trades],
        columns=["pair", "ts_ms", "trade_id", "price", "qty"],
    )
    df["pv"] = df["price"] * df["qty"]
    out: dict[Key, Candle] = {}
    for pair, group in df.groupby("pair"):
        g = group.sort_values(["ts_ms", "trade_id"], kind="stable")
        g.index = pd.to_datetime(g["ts_ms"], unit="ms")
        bars = g.resample(f"{candle_seconds}s", label="left", closed="left", origin="epoch").agg(
            open=("price", "first"),
            high=("price", "max"),
            low=("price", "min"),
            close=("price", "last"),
            volume=("qty", math.fsum),
            pv=("pv", math.fsum),
            n=("price", "size"),
        )
        prev_close = bars["close"].ffill()
        for start, row in bars.iterrows():
            start_ms = int(pd.Timestamp(start).value // 1_000_000)
            empty = row["n"] == 0
            p = float(prev_close[start])
            out[(str(pair), candle_seconds, start_ms)] = Candle(
                pair=str(pair),
                candle_seconds=candle_seconds,
                window_start_ms=start_ms,
                window_end_ms=start_ms + candle_seconds * 1000,
                open=p if empty else float(row["open"]),
                high=p if empty else float(row["high"]),
                low=p if empty else float(row["low"]),
                close=p,
                volume=0.0 if empty else float(row["volume"]),
                vwap=p if empty else float(row["pv"]) / float(row["volume"]),
                n_trades=int(row["n"]),
                final=True,
            )
    return out


def finals(candles: Iterable[Candle]) -> dict[Key, Candle]:
    """Final candles by key; fails on two different finals for one window."""
    out: dict[Key, Candle] = {}
    for c in candles:
        if c.final:
            key = (c.pair, c.candle_seconds, c.window_start_ms)
            assert key not in out or out[key] == c, f"two different finals for {key}"
            out[key] = c
    return out


def run(
    trades: Iterable[Trade], widths: Sequence[int] = WIDTHS, finish: bool = True
) -> list[Candle]:
    builder = CandleBuilder(widths, grace_ms=GRACE_MS)
    for i, t in enumerate(trades):
        builder.add(t, 0, i)
    if finish:
        builder.finish()
    out = builder.drain()
    assert out.rejected == []
    return out.candles
