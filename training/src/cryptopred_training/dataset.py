"""Validation of `technical_indicators` rows before training, and a summary for logging."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cryptopred_core.records import INDICATOR_COLUMNS, Candle, field_names

PRICE_COLUMNS = ("open", "high", "low", "close")
# the per-window values of a candle: its fields less the series key and what follows from it
CANDLE_COLUMNS = tuple(
    c for c in field_names(Candle) if c not in ("pair", "candle_seconds", "window_end_ms", "final")
)
REQUIRED_COLUMNS = CANDLE_COLUMNS + INDICATOR_COLUMNS


class DataValidationError(ValueError):
    """The training rows are unusable; `problem` names the check and `count` its size."""

    def __init__(self, problem: str, count: int, detail: str) -> None:
        super().__init__(f"{problem}: {count} {detail}")
        self.problem = problem
        self.count = count


def _key_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in ("pair", "candle_seconds", "window_start_ms") if c in frame.columns]


def validate_indicator_frame(
    frame: pd.DataFrame,
    *,
    candle_seconds: int,
    min_rows: int = 500,
    max_nan_share: float = 0.05,
) -> dict[str, Any]:
    """Check the rows of one pair and width; raise DataValidationError, else return a summary.

    Checks, in order: missing columns, too few rows, duplicate keys, unsorted rows, gaps in the
    time grid, non-positive prices, and the NaN/inf share of each column against max_nan_share.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError("missing columns", len(missing), f"columns absent: {missing}")
    n_rows = len(frame)
    if n_rows < min_rows:
        raise DataValidationError("too few rows", n_rows, f"rows, at least {min_rows} needed")
    keys = _key_columns(frame)
    n_duplicates = int(frame.duplicated(subset=keys).sum())
    if n_duplicates:
        raise DataValidationError("duplicate keys", n_duplicates, f"rows repeat a key {keys}")
    if "pair" in frame.columns and frame["pair"].nunique() > 1:
        pairs = sorted(frame["pair"].unique())
        raise DataValidationError("mixed pairs", len(pairs), f"pairs in one dataset: {pairs}")
    start_ms = frame["window_start_ms"].to_numpy(dtype=np.int64)
    steps_ms = np.diff(start_ms)
    n_unsorted = int((steps_ms < 0).sum())
    if n_unsorted:
        raise DataValidationError(
            "unsorted rows", n_unsorted, "rows start before their predecessor (sort by time)"
        )
    width_ms = candle_seconds * 1000
    n_off_grid = int((start_ms % width_ms != 0).sum())
    if n_off_grid:
        raise DataValidationError(
            "gaps in the time grid", n_off_grid, f"rows not aligned to {candle_seconds} s candles"
        )
    n_missing = int((steps_ms // width_ms - 1)[steps_ms > width_ms].sum())
    if n_missing:
        raise DataValidationError(
            "gaps in the time grid", n_missing, f"missing {candle_seconds} s candles"
        )
    prices = frame[list(PRICE_COLUMNS)].to_numpy(dtype=np.float64)
    n_non_positive = int((prices <= 0).any(axis=1).sum())
    if n_non_positive:
        raise DataValidationError("non-positive prices", n_non_positive, "rows have a price <= 0")
    nan_share = _nan_share(frame)
    over = {c: s for c, s in nan_share.items() if s > max_nan_share}
    if over:
        worst = max(over, key=lambda c: over[c])
        raise DataValidationError(
            "NaN/inf share over threshold",
            len(over),
            f"columns exceed {max_nan_share:.1%} (worst {worst}: {over[worst]:.1%})",
        )
    return {
        "n_rows": n_rows,
        "pair": str(frame["pair"].iloc[0]) if "pair" in frame.columns else None,
        "candle_seconds": candle_seconds,
        "start_ms": int(start_ms[0]),
        "end_ms": int(start_ms[-1]) + width_ms,
        "close_min": float(prices[:, 3].min()),
        "close_max": float(prices[:, 3].max()),
        "max_nan_share": max(nan_share.values()),
        "nan_share": nan_share,
    }


def _nan_share(frame: pd.DataFrame) -> dict[str, float]:
    shares: dict[str, float] = {}
    for column in REQUIRED_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        shares[column] = float((~np.isfinite(values)).mean())
    return shares
