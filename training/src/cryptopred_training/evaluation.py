"""Price-space forecast metrics and an expanding-window walk-forward backtest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]
Metrics = dict[str, float]
ModelMetrics = dict[str, Metrics]


def forecast_metrics(
    base_close: FloatArray,
    actual_returns: FloatArray,
    predicted_returns: FloatArray,
    horizon_seconds: Sequence[int],
) -> Metrics:
    """MAE/RMSE of the predicted price, directional accuracy and 80% coverage per horizon.

    base_close (n,) is the last close of each window; actual_returns (n, H) the realised log
    returns; predicted_returns (n, H, 3) the low/median/high log-return quantiles. Keys are
    `mae_60s`, `rmse_60s`, `directional_accuracy_60s`, `coverage_80_60s`, ...
    A zero predicted return counts as a miss in directional accuracy.
    """
    metrics: Metrics = {}
    base = base_close[:, None]
    actual_price = base * np.exp(actual_returns)
    predicted_price = base * np.exp(predicted_returns[..., 1])
    error = predicted_price - actual_price
    inside = (actual_returns >= predicted_returns[..., 0]) & (
        actual_returns <= predicted_returns[..., 2]
    )
    hit = np.sign(predicted_returns[..., 1]) == np.sign(actual_returns)
    for j, seconds in enumerate(horizon_seconds):
        moved = actual_returns[:, j] != 0
        metrics[f"mae_{seconds}s"] = float(np.abs(error[:, j]).mean())
        metrics[f"rmse_{seconds}s"] = float(np.sqrt((error[:, j] ** 2).mean()))
        metrics[f"directional_accuracy_{seconds}s"] = (
            float(hit[moved, j].mean()) if moved.any() else 0.0
        )
        metrics[f"coverage_80_{seconds}s"] = float(inside[:, j].mean())
    return metrics


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: window ends used to fit, ends scored, and per-model metrics."""

    train_ends: IndexArray
    test_ends: IndexArray
    metrics: ModelMetrics


@dataclass(frozen=True)
class WalkForwardResult:
    folds: list[Fold]
    mean: ModelMetrics


def walk_forward_folds(
    ends: IndexArray, n_folds: int, min_train_fraction: float, gap_steps: int
) -> list[tuple[IndexArray, IndexArray]]:
    """Expanding-window (train, test) pairs; tests are consecutive, disjoint blocks in time.

    The first min_train_fraction of ends is always train; the rest is cut into n_folds test
    blocks. Fold i trains on every end before its block, less gap_steps rows before it.
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    first_test = int(len(ends) * min_train_fraction)
    blocks = np.array_split(ends[first_test:], n_folds)
    folds = []
    for block in blocks:
        if len(block) == 0:
            raise ValueError(f"too few windows ({len(ends)}) for {n_folds} walk-forward folds")
        train = ends[ends < block[0] - gap_steps]
        folds.append((train, block))
    return folds


def walk_forward(
    ends: IndexArray,
    n_folds: int,
    fit_and_score: Callable[[IndexArray, IndexArray], ModelMetrics],
    *,
    min_train_fraction: float = 0.5,
    gap_steps: int = 0,
) -> WalkForwardResult:
    """Run fit_and_score(train_ends, test_ends) per fold; average each model's metrics."""
    folds = [
        Fold(train, test, fit_and_score(train, test))
        for train, test in walk_forward_folds(ends, n_folds, min_train_fraction, gap_steps)
    ]
    mean: ModelMetrics = {}
    for model in folds[0].metrics:
        keys = folds[0].metrics[model]
        mean[model] = {k: float(np.mean([f.metrics[model][k] for f in folds])) for k in keys}
    return WalkForwardResult(folds=folds, mean=mean)
