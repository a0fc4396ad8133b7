"""Shared pieces of the streaming tests and benchmarks: trades and pandas/TA-Lib references."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import talib

from cryptopred_core.db import fetch_all
from cryptopred_core.records import INDICATOR_COLUMNS, Trade

BASE_MS = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000  # an hour boundary


def make_trades(pair: str, seed: int, hours: float, start_price: float) -> list[Trade]:
    """A random walk of trades, about one every 2 s, some out of order within 2 s."""
    rng = np.random.default_rng(seed)
    n = int(hours * 1800)
    gaps = rng.exponential(2000, n).astype(np.int64) + 1
    gaps[rng.random(n) < 0.01] += 400_000  # a few quiet stretches: flat candles
    ts = BASE_MS + np.cumsum(gaps)
    prices = start_price * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    qty = rng.pareto(2.5, n) * 0.01 + 0.0001
    trades = [
        Trade(
            pair=pair,
            price=round(float(p), 2),
            qty=round(float(q), 6),
            side="buy" if rng.random() < 0.5 else "sell",
            trade_id=i,
            ts_ms=int(t),
            source="test",
        )
        for i, (t, p, q) in enumerate(zip(ts, prices, qty, strict=True))
    ]
    # shuffle neighbours within 2 s of event time (inside the 5 s grace)
    for i in range(1, len(trades) - 1, 7):
        a, b = trades[i], trades[i + 1]
        if b.ts_ms - a.ts_ms < 2000:
            trades[i], trades[i + 1] = b, a
    return trades


def closing_trade(trades: list[Trade]) -> Trade:
    """A trade past the next hour boundary plus the grace: its watermark closes every window
    of the series (its own window stays open and is not compared)."""
    last = max(t.ts_ms for t in trades)
    ts_ms = last - last % 3_600_000 + 3_600_000 + 6_000
    return Trade(
        pair=trades[0].pair,
        price=trades[-1].price,
        qty=0.001,
        side="buy",
        trade_id=10**8,
        ts_ms=ts_ms,
        source="test",
    )


def reference_candles(trades: list[Trade], candle_seconds: int) -> pd.DataFrame:
    """Event-time resample (left-closed, left-labelled) with flat fill, as pandas does it."""
    frame = (
        pd.DataFrame(
            {
                "ts": pd.to_datetime([t.ts_ms for t in trades], unit="ms"),
                "price": [t.price for t in trades],
                "qty": [t.qty for t in trades],
                "order": [(t.ts_ms, t.trade_id) for t in trades],
            }
        )
        .sort_values("order")
        .set_index("ts")
    )
    frame["pv"] = frame["price"] * frame["qty"]
    rule = f"{candle_seconds}s"
    grouped = frame.resample(rule, label="left", closed="left")
    out = pd.DataFrame(
        {
            "open": grouped["price"].first(),
            "high": grouped["price"].max(),
            "low": grouped["price"].min(),
            "close": grouped["price"].last(),
            "volume": grouped["qty"].apply(math.fsum),
            "n_trades": grouped["price"].count(),
            "pv": grouped["pv"].apply(math.fsum),
        }
    )
    out["close"] = out["close"].ffill()
    for col in ("open", "high", "low"):
        out[col] = out[col].fillna(out["close"])
    out["vwap"] = np.where(
        out["volume"] > 0, out["pv"] / out["volume"].where(out["volume"] > 0), out["close"]
    )
    out["window_start_ms"] = out.index.as_unit("ms").astype("int64")
    return out.reset_index(drop=True).drop(columns="pv")


def batch_indicators(candles: pd.DataFrame) -> dict[str, np.ndarray]:
    o, h, low, c, v = (
        candles[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close", "volume")
    )
    out: dict[str, np.ndarray] = {}
    for p in (7, 14, 21, 60):
        out[f"sma_{p}"] = talib.SMA(c, timeperiod=p)
        out[f"ema_{p}"] = talib.EMA(c, timeperiod=p)
        out[f"rsi_{p}"] = talib.RSI(c, timeperiod=p)
    out["macd_7"], out["macdsignal_7"], out["macdhist_7"] = talib.MACD(
        c, fastperiod=7, slowperiod=21, signalperiod=7
    )
    out["obv"] = talib.OBV(c, v)
    out["atr_14"] = talib.ATR(h, low, c, timeperiod=14)
    out["adx_14"] = talib.ADX(h, low, c, timeperiod=14)
    out["bbands_upper_20"], out["bbands_middle_20"], out["bbands_lower_20"] = talib.BBANDS(
        c, timeperiod=20, nbdevup=2, nbdevdn=2
    )
    out["mfi_14"] = talib.MFI(h, low, c, v, timeperiod=14)
    del o
    return out


def wait_for(
    predicate: Callable[[], bool],
    timeout_s: float,
    step: Callable[[], object] | None = None,
    interval_s: float = 0.05,
) -> None:
    """Poll `predicate` (calling `step` between polls, if given) until true or fail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if step is not None:
            step()
        if predicate():
            return
        if step is None:
            time.sleep(interval_s)
    raise AssertionError(f"condition not reached within {timeout_s} s")


CANDLE_FIELDS = ("window_start_ms", "open", "high", "low", "close", "volume", "vwap", "n_trades")

Refs = dict[tuple[str, int], pd.DataFrame]


def candle_tuples(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The candle fields of DB rows, for comparison with `reference_tuples`."""
    return [tuple(r[f] for f in CANDLE_FIELDS) for r in rows]


def reference_tuples(ref: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [
        (int(x.window_start_ms), x.open, x.high, x.low, x.close, x.volume, x.vwap, int(x.n_trades))
        for x in ref.itertuples()
    ]


def all_final(conn: psycopg.Connection, refs: Refs) -> bool:
    """Every reference window is a final row in both `candles` and `technical_indicators`."""
    for (pair, width), ref in refs.items():
        last = int(ref["window_start_ms"].iloc[-1])
        for table in ("candles", "technical_indicators"):
            n = fetch_all(
                conn,
                f"SELECT count(*) AS n FROM {table} WHERE pair = %s AND "
                "candle_seconds = %s AND window_start_ms <= %s AND final",
                (pair, width, last),
            )[0]["n"]
            if n != len(ref):
                return False
    return True


def indicator_rows(
    conn: psycopg.Connection, pair: str, width: int, ref: pd.DataFrame
) -> list[dict[str, Any]]:
    """The `technical_indicators` rows of the reference's windows, oldest first."""
    return fetch_all(
        conn,
        "SELECT * FROM technical_indicators WHERE pair = %s AND candle_seconds = %s "
        "AND window_start_ms <= %s ORDER BY window_start_ms",
        (pair, width, int(ref["window_start_ms"].iloc[-1])),
    )


def indicator_mismatches(rows: list[dict[str, Any]], ref: pd.DataFrame) -> list[str]:
    """Columns where the rows differ from batch TA-Lib over the reference (1e-9; NaN = null)."""
    expected = batch_indicators(ref)
    bad = []
    for column in INDICATOR_COLUMNS:
        for row, value in zip(rows, expected[column], strict=True):
            got = row[column]
            if math.isnan(value):
                ok = got is None
            else:
                ok = got is not None and abs(got - value) <= max(1e-9, 1e-9 * abs(value))
            if not ok:
                bad.append(f"{column} at {row['window_start_ms']}: {got} != {value}")
    return bad
