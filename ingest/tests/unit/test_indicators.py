"""The indicator engine against batch TA-Lib over the same candles."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import talib

from cryptopred_core.records import INDICATOR_COLUMNS, Candle, IndicatorRow
from cryptopred_ingest.indicators import RESTORE_CANDLES, IndicatorEngine

START_MS = 1_700_000_040_000 - 1_700_000_040_000 % 60_000


def make_candles(
    n: int, pair: str = "BTC/USD", seed: int = 0, price: float = 30_000.0
) -> list[Candle]:
    """A random walk of final 1-minute candles, about 10% of them flat (no trades)."""
    rng = np.random.default_rng(seed)
    out: list[Candle] = []
    close = price
    for i in range(n):
        start = START_MS + i * 60_000
        if rng.random() < 0.1:
            o = h = lo = c = close
            volume, n_trades = 0.0, 0
        else:
            o = close
            c = o * math.exp(rng.normal(0, 2e-3))
            h = max(o, c) * (1 + rng.uniform(0, 1e-3))
            lo = min(o, c) * (1 - rng.uniform(0, 1e-3))
            volume, n_trades = float(rng.uniform(0.1, 20)), int(rng.integers(1, 50))
        out.append(
            Candle(
                pair=pair,
                candle_seconds=60,
                window_start_ms=start,
                window_end_ms=start + 60_000,
                open=o,
                high=h,
                low=lo,
                close=c,
                volume=volume,
                vwap=(o + c) / 2 if volume else c,
                n_trades=n_trades,
                final=True,
            )
        )
        close = c
    return out


def batch(candles: Sequence[Candle]) -> dict[str, np.ndarray]:
    """Every indicator column by batch TA-Lib over the whole series."""
    a = {
        k: np.array([getattr(c, k) for c in candles], dtype=np.float64)
        for k in ("high", "low", "close", "volume")
    }
    h, lo, c, v = a["high"], a["low"], a["close"], a["volume"]
    cols: dict[str, np.ndarray] = {}
    for p in (7, 14, 21, 60):
        cols[f"sma_{p}"] = talib.SMA(c, timeperiod=p)
        cols[f"ema_{p}"] = talib.EMA(c, timeperiod=p)
        cols[f"rsi_{p}"] = talib.RSI(c, timeperiod=p)
    cols["macd_7"], cols["macdsignal_7"], cols["macdhist_7"] = talib.MACD(
        c, fastperiod=7, slowperiod=21, signalperiod=7
    )
    cols["obv"] = talib.OBV(c, v)
    cols["atr_14"] = talib.ATR(h, lo, c, timeperiod=14)
    cols["adx_14"] = talib.ADX(h, lo, c, timeperiod=14)
    up, mid, low = talib.BBANDS(c, timeperiod=20, nbdevup=2, nbdevdn=2)
    cols["bbands_upper_20"], cols["bbands_middle_20"], cols["bbands_lower_20"] = up, mid, low
    cols["mfi_14"] = talib.MFI(h, lo, c, v, timeperiod=14)
    assert sorted(cols) == sorted(INDICATOR_COLUMNS)
    return cols


def assert_row_matches(
    row: IndicatorRow, ref: dict[str, np.ndarray], i: int, tol: float = 1e-9
) -> None:
    for col in INDICATOR_COLUMNS:
        want = float(ref[col][i])
        got = getattr(row, col)
        if math.isnan(want):
            assert got is None, f"{col}[{i}]: expected None, got {got}"
        else:
            assert got is not None, f"{col}[{i}]: expected {want}, got None"
            assert abs(got - want) <= tol * max(1.0, abs(want)), f"{col}[{i}]: {got} != {want}"


def feed(engine: IndicatorEngine, candles: Sequence[Candle]) -> list[IndicatorRow]:
    rows: list[IndicatorRow] = []
    for c in candles:
        rows.extend(engine.on_candle(c))
    return rows


def test_final_rows_equal_batch_talib_including_leading_nones() -> None:
    candles = make_candles(300)
    rows = feed(IndicatorEngine(), candles)
    assert len(rows) == len(candles)
    ref = batch(candles)
    for i, row in enumerate(rows):
        assert row.window_start_ms == candles[i].window_start_ms and row.final
        assert_row_matches(row, ref, i)
    assert rows[5].sma_7 is None and rows[6].sma_7 is not None
    assert rows[59].rsi_60 is None and rows[60].rsi_60 is not None
    assert rows[26].adx_14 is None and rows[27].adx_14 is not None
    assert all(getattr(rows[-1], col) is not None for col in INDICATOR_COLUMNS)


def as_open(c: Candle) -> Candle:
    return Candle(**{**{f: getattr(c, f) for f in c.__struct_fields__}, "final": False})


@pytest.mark.parametrize("k", [3, 20, 100])
def test_peek_on_open_candle_equals_batch_with_it_appended_and_keeps_state(k: int) -> None:
    candles = make_candles(k + 3, seed=1)
    engine = IndicatorEngine()
    feed(engine, candles[:k])
    (row,) = engine.on_candle(as_open(candles[k]))
    assert not row.final
    assert_row_matches(row, batch(candles[: k + 1]), k)
    # An open candle two windows on, while the previous window is itself still open.
    (row2,) = engine.on_candle(as_open(candles[k + 1]))
    assert_row_matches(row2, batch(candles[: k + 2]), k + 1)
    # Peeking changed nothing: the finals still match the uninterrupted batch.
    rows = feed(engine, candles[k:])
    ref = batch(candles)
    for j, r in enumerate(rows):
        assert_row_matches(r, ref, k + j)


def test_repeated_and_stale_candles_give_no_rows_and_gaps_are_flat_filled() -> None:
    candles = make_candles(60, seed=2)
    engine = IndicatorEngine()
    feed(engine, candles[:40])
    assert engine.on_candle(candles[39]) == []
    assert engine.on_candle(as_open(candles[30])) == []
    rows = engine.on_candle(candles[43])  # 40..42 missing: filled as flat candles
    assert [r.window_start_ms for r in rows] == [c.window_start_ms for c in candles[40:44]]
    assert all(r.n_trades == 0 and r.close == candles[39].close for r in rows[:3])


def test_pairs_and_widths_are_independent() -> None:
    a, b = make_candles(120, "BTC/USD", seed=3), make_candles(120, "ETH/USD", seed=4, price=2_000.0)
    engine = IndicatorEngine()
    rows = feed(engine, [c for pair in zip(a, b, strict=True) for c in pair])
    ref_a, ref_b = batch(a), batch(b)
    for i in range(120):
        assert_row_matches(rows[2 * i], ref_a, i)
        assert_row_matches(rows[2 * i + 1], ref_b, i)


@pytest.mark.parametrize("k", [5, 30, 250])
def test_restore_from_full_history_continues_exactly(k: int) -> None:
    candles = make_candles(320, seed=5)
    uninterrupted = feed(IndicatorEngine(), candles)
    restored = IndicatorEngine()
    restored.restore(candles[:k], uninterrupted[k - 1])
    rows = feed(restored, candles[k:])
    ref = batch(candles)
    for j, row in enumerate(rows):
        assert_row_matches(row, ref, k + j)


def test_restore_from_last_restore_candles_matches_uninterrupted_engine() -> None:
    total, k = RESTORE_CANDLES + 800, RESTORE_CANDLES + 500
    candles = make_candles(total, seed=6)
    uninterrupted = feed(IndicatorEngine(), candles)
    restored = IndicatorEngine()
    restored.restore(candles[k - RESTORE_CANDLES : k], uninterrupted[k - 1])
    rows = feed(restored, candles[k:])
    for j, row in enumerate(rows):
        want = uninterrupted[k + j]
        for col in INDICATOR_COLUMNS:
            got, exp = getattr(row, col), getattr(want, col)
            assert got is not None and exp is not None
            assert abs(got - exp) <= 1e-9 * max(1.0, abs(exp)), f"{col}[{k + j}]: {got} != {exp}"
