"""Scale-free causal features, log-return targets, sample windows, splits and the Normalizer.

Every feature at row t is computed from rows <= t only; targets at row t look ahead, and the
splits leave a gap of the longest horizon between train, validation and test so that no
train target overlaps a later split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]

_RELATIVE_TO_CLOSE = (
    "sma_7",
    "sma_14",
    "sma_21",
    "sma_60",
    "ema_7",
    "ema_14",
    "ema_21",
    "ema_60",
    "bbands_upper_20",
    "bbands_middle_20",
    "bbands_lower_20",
    "vwap",
)
_PERCENT = ("rsi_7", "rsi_14", "rsi_21", "rsi_60", "mfi_14", "adx_14")
_SCALED_BY_CLOSE = ("macd_7", "macdsignal_7", "macdhist_7", "atr_14")

FEATURE_COLUMNS: tuple[str, ...] = (
    "ret_1",
    "ret_open_close",
    "range_high_low",
    "log_volume",
    "log_n_trades",
    *(f"{c}_rel" for c in _RELATIVE_TO_CLOSE),
    *(f"{c}_pct" for c in _PERCENT),
    *(f"{c}_over_close" for c in _SCALED_BY_CLOSE),
)


def compute_features(frame: pd.DataFrame) -> pd.DataFrame:
    """FEATURE_COLUMNS for each row, from that row and the one before it only (causal).

    Price-level indicators become indicator/close - 1, oscillators value/100, MACD and ATR
    value/close; `ret_1` of the first row falls back to log(close/open). NaN stays NaN.
    """
    out = feature_arrays(lambda column: frame_column(frame, column))
    return pd.DataFrame(out, index=frame.index, columns=list(FEATURE_COLUMNS))


def feature_arrays(column: Callable[[str], FloatArray]) -> dict[str, FloatArray]:
    """compute_features on columns given as float arrays (`column(name)`), e.g. taken from a
    few records without building a DataFrame (see `records_column`)."""
    close = column("close")
    open_ = column("open")
    previous = np.concatenate([open_[:1], close[:-1]])
    out: dict[str, FloatArray] = {
        "ret_1": np.log(close / previous),
        "ret_open_close": np.log(close / open_),
        "range_high_low": np.log(column("high") / column("low")),
        "log_volume": np.log1p(column("volume")),
        "log_n_trades": np.log1p(column("n_trades")),
    }
    for name in _RELATIVE_TO_CLOSE:
        out[f"{name}_rel"] = column(name) / close - 1.0
    for name in _PERCENT:
        out[f"{name}_pct"] = column(name) / 100.0
    for name in _SCALED_BY_CLOSE:
        out[f"{name}_over_close"] = column(name) / close
    return out


def frame_column(frame: pd.DataFrame, column: str) -> FloatArray:
    values: FloatArray = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    return values


def records_column(records: Sequence[Mapping[str, Any]], column: str) -> FloatArray:
    """One column of records as floats; None and non-numbers become NaN (as in `frame_column`)."""
    values = [record[column] for record in records]
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        coerced: FloatArray = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(
            dtype=np.float64
        )
        return coerced


def horizon_steps(horizon_seconds: Sequence[int], candle_seconds: int) -> tuple[int, ...]:
    """Horizons in candles; each horizon must be a positive whole number of candles."""
    steps = []
    for seconds in horizon_seconds:
        if seconds <= 0 or seconds % candle_seconds:
            raise ValueError(
                f"horizon_seconds {seconds} is not a positive multiple of "
                f"candle_seconds {candle_seconds}"
            )
        steps.append(seconds // candle_seconds)
    return tuple(steps)


def compute_targets(close: npt.ArrayLike, steps: Sequence[int]) -> FloatArray:
    """(n, n_horizons) log(close[t + h] / close[t]); NaN where t + h is past the end."""
    values = np.asarray(close, dtype=np.float64)
    targets = np.full((len(values), len(steps)), np.nan)
    for j, h in enumerate(steps):
        if h < len(values):
            targets[: len(values) - h, j] = np.log(values[h:] / values[:-h])
    return targets


def valid_window_ends(features: FloatArray, targets: FloatArray, window_steps: int) -> IndexArray:
    """Rows t whose window t-L+1..t has finite features and whose targets are all finite."""
    bad = np.asarray(~np.isfinite(features).all(axis=1), dtype=np.int64)
    n_rows = bad.shape[0]
    bad_in_window = np.convolve(bad, np.ones(window_steps, dtype=np.int64))[:n_rows]
    ok = (bad_in_window == 0) & np.isfinite(targets).all(axis=1)
    ok[: window_steps - 1] = False
    return np.flatnonzero(ok).astype(np.int64)


@dataclass(frozen=True)
class Split:
    """Window-end row indices of each split, in time order."""

    train: IndexArray
    validation: IndexArray
    test: IndexArray


def chronological_split(
    ends: IndexArray, train_fraction: float, validation_fraction: float, gap_steps: int
) -> Split:
    """Train, validation, test in time order; gap_steps rows dropped before each later split."""
    n = len(ends)
    n_train = int(n * train_fraction)
    n_validation = int(n * validation_fraction)
    train = ends[:n_train]
    validation = _after(ends[n_train : n_train + n_validation], train, gap_steps)
    test = _after(ends[n_train + n_validation :], validation, gap_steps)
    if min(len(train), len(validation), len(test)) == 0:
        raise ValueError(f"too few windows ({n}) to split into train, validation and test")
    return Split(train=train, validation=validation, test=test)


def _after(block: IndexArray, before: IndexArray, gap_steps: int) -> IndexArray:
    if len(before) == 0:
        return block
    kept: IndexArray = block[block > before[-1] + gap_steps]
    return kept


@dataclass(frozen=True)
class Normalizer:
    """Feature mean/std and per-horizon target scale, fitted on train rows only."""

    mean: list[float]
    std: list[float]
    target_scale: list[float]

    @classmethod
    def fit(cls, features: FloatArray, targets: FloatArray) -> Normalizer:
        """Fit on the given (train) rows; NaN ignored, tiny std replaced by 1."""
        mean = np.nanmean(features, axis=0)
        std = np.nanstd(features, axis=0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        scale = np.nanstd(targets, axis=0)
        scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
        return cls(
            mean=[float(v) for v in np.nan_to_num(mean)],
            std=[float(v) for v in std],
            target_scale=[float(v) for v in scale],
        )

    def transform(self, features: FloatArray) -> npt.NDArray[np.float32]:
        """Standardised features; NaN/inf become 0 (the train mean)."""
        z = (features - np.asarray(self.mean)) / np.asarray(self.std)
        out: npt.NDArray[np.float32] = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(
            np.float32
        )
        return out

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean, "std": self.std, "target_scale": self.target_scale}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalizer:
        return cls(
            mean=[float(v) for v in data["mean"]],
            std=[float(v) for v in data["std"]],
            target_scale=[float(v) for v in data["target_scale"]],
        )


def gather_windows(
    features: npt.NDArray[np.float32], ends: IndexArray, window_steps: int
) -> npt.NDArray[np.float32]:
    """(len(ends), window_steps, n_features) windows ending at each row of `ends`."""
    offsets = np.arange(-window_steps + 1, 1, dtype=np.int64)
    windows: npt.NDArray[np.float32] = features[ends[:, None] + offsets]
    return windows


@dataclass(frozen=True)
class WindowSource:
    """Normalised features and scaled targets that yield {"x", "y"} tensor batches."""

    features: npt.NDArray[np.float32]
    scaled_targets: npt.NDArray[np.float32]
    ends: IndexArray
    window_steps: int

    @classmethod
    def build(
        cls,
        features: FloatArray,
        targets: FloatArray,
        ends: IndexArray,
        normalizer: Normalizer,
        window_steps: int,
    ) -> WindowSource:
        scaled = np.nan_to_num(targets / np.asarray(normalizer.target_scale)).astype(np.float32)
        return cls(normalizer.transform(features), scaled, ends, window_steps)

    def __len__(self) -> int:
        return len(self.ends)

    def batch(self, ends: IndexArray) -> dict[str, torch.Tensor]:
        x = gather_windows(self.features, ends, self.window_steps)
        return {"x": torch.from_numpy(x), "y": torch.from_numpy(self.scaled_targets[ends])}

    def batches(
        self, batch_size: int, *, shuffle_seed: int | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batches in time order, or shuffled reproducibly when shuffle_seed is given."""
        order = self.ends
        if shuffle_seed is not None:
            order = np.random.default_rng(shuffle_seed).permutation(self.ends)
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start : start + batch_size])
