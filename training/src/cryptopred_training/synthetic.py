"""Synthetic IndicatorRow-shaped frames: a random walk, optionally with a planted lagged signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

from cryptopred_core.records import IndicatorRow, field_names

DEFAULT_START_MS = 1_700_000_040_000 // 60_000 * 60_000


def synthetic_returns(
    n_rows: int, *, volatility: float, ar_lag: int | None, ar_coef: float, seed: int
) -> np.ndarray:
    """Log returns r_t = ar_coef * r_{t - ar_lag} + noise (plain noise when ar_lag is None)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, volatility, n_rows)
    if ar_lag is None or ar_coef == 0.0:
        return noise
    returns = noise.copy()
    for t in range(ar_lag, n_rows):
        returns[t] += ar_coef * returns[t - ar_lag]
    return returns


def synthetic_indicator_frame(
    n_rows: int = 3000,
    *,
    pair: str = "BTC/USD",
    candle_seconds: int = 60,
    start_ms: int = DEFAULT_START_MS,
    base_price: float = 30_000.0,
    volatility: float = 0.001,
    ar_lag: int | None = None,
    ar_coef: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Contiguous candles with every indicator column computed by TA-Lib batch functions.

    With ar_lag and ar_coef set, the close's log returns follow r_t = ar_coef * r_{t-ar_lag} +
    noise, a signal visible inside a window longer than ar_lag. NaN marks indicator warm-up.
    """
    width_ms = candle_seconds * 1000
    if start_ms % width_ms:
        raise ValueError(f"start_ms {start_ms} is not a multiple of {width_ms}")
    rng = np.random.default_rng(seed + 1_000_003)
    returns = synthetic_returns(
        n_rows, volatility=volatility, ar_lag=ar_lag, ar_coef=ar_coef, seed=seed
    )
    close = base_price * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[base_price], close[:-1]])
    wick = np.abs(rng.normal(0.0, volatility / 2, (2, n_rows)))
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = rng.lognormal(mean=1.0, sigma=0.5, size=n_rows)
    start = start_ms + width_ms * np.arange(n_rows, dtype=np.int64)
    frame = pd.DataFrame(
        {
            "pair": pair,
            "candle_seconds": candle_seconds,
            "window_start_ms": start,
            "window_end_ms": start + width_ms,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "vwap": (high + low + close) / 3.0,
            "n_trades": rng.poisson(20, n_rows) + 1,
            "final": True,
        }
    )
    for name, values in _indicators(open_, high, low, close, volume).items():
        frame[name] = values
    return frame[list(field_names(IndicatorRow))]


def _indicators(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for period in (7, 14, 21, 60):
        out[f"sma_{period}"] = talib.SMA(close, timeperiod=period)
        out[f"ema_{period}"] = talib.EMA(close, timeperiod=period)
        out[f"rsi_{period}"] = talib.RSI(close, timeperiod=period)
    macd, signal, hist = talib.MACD(close, fastperiod=7, slowperiod=21, signalperiod=7)
    out["macd_7"], out["macdsignal_7"], out["macdhist_7"] = macd, signal, hist
    out["obv"] = talib.OBV(close, volume)
    out["atr_14"] = talib.ATR(high, low, close, timeperiod=14)
    out["adx_14"] = talib.ADX(high, low, close, timeperiod=14)
    upper, middle, lower = talib.BBANDS(close, timeperiod=20)
    out["bbands_upper_20"], out["bbands_middle_20"], out["bbands_lower_20"] = upper, middle, lower
    out["mfi_14"] = talib.MFI(high, low, close, volume, timeperiod=14)
    return out
