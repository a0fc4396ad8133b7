"""Proper scores of quantile forecasts and the Diebold-Mariano test between two forecasters.

All in log-return space: `actual` (n,) realised returns, quantile forecasts (n,) per level.
Lower is better for every loss here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def pinball_loss(actual: FloatArray, predicted: FloatArray, quantile: float) -> FloatArray:
    """Per-sample pinball (quantile) loss of `predicted` as the `quantile` level."""
    error = actual - predicted
    return np.maximum(quantile * error, (quantile - 1.0) * error)


def mean_pinball(
    actual: FloatArray, quantiles_pred: FloatArray, levels: Sequence[float]
) -> FloatArray:
    """Per-sample pinball loss averaged over the levels; `quantiles_pred` is (n, len(levels))."""
    losses = [pinball_loss(actual, quantiles_pred[:, k], q) for k, q in enumerate(levels)]
    mean: FloatArray = np.mean(losses, axis=0)
    return mean


def interval_score(
    actual: FloatArray, lower: FloatArray, upper: FloatArray, alpha: float
) -> FloatArray:
    """Per-sample interval score of a central (1 - alpha) interval (Gneiting & Raftery):
    its width plus 2/alpha times how far the outcome falls outside it."""
    below = np.maximum(lower - actual, 0.0)
    above = np.maximum(actual - upper, 0.0)
    score: FloatArray = (upper - lower) + (2.0 / alpha) * (below + above)
    return score


@dataclass(frozen=True)
class DieboldMariano:
    """Mean loss difference (candidate - reference), its HAC t statistic and two-sided p.

    A negative statistic means the candidate's loss is lower."""

    mean_difference: float
    statistic: float
    p_value: float


def diebold_mariano(
    candidate_loss: FloatArray, reference_loss: FloatArray, lag: int
) -> DieboldMariano:
    """The Diebold-Mariano test of equal expected loss, with a Newey-West (Bartlett) variance
    of the loss difference up to `lag` autocovariances (h - 1 for h-step forecasts, whose
    errors overlap) and the normal distribution for the p-value."""
    d = np.asarray(candidate_loss, dtype=np.float64) - np.asarray(reference_loss, dtype=np.float64)
    n = d.shape[0]
    if n < 2:
        raise ValueError(f"the Diebold-Mariano test needs at least 2 paired losses, got {n}")
    lag = max(0, min(lag, n - 1))
    mean = float(d.mean())
    centred = d - mean
    variance = float(centred @ centred) / n
    for k in range(1, lag + 1):
        weight = 1.0 - k / (lag + 1)
        variance += 2.0 * weight * float(centred[k:] @ centred[:-k]) / n
    if variance <= 0.0:
        if mean == 0.0:
            return DieboldMariano(0.0, 0.0, 1.0)
        return DieboldMariano(mean, math.copysign(math.inf, mean), 0.0)
    statistic = mean / math.sqrt(variance / n)
    return DieboldMariano(mean, statistic, math.erfc(abs(statistic) / math.sqrt(2.0)))


def quantile_scores(
    actual: FloatArray,
    predicted: FloatArray,
    levels: Sequence[float],
    horizon_seconds: Sequence[int],
) -> dict[str, float]:
    """Per horizon: pinball loss per level and averaged, the central interval's score and
    mean width (log-return units). `actual` (n, H), `predicted` (n, H, len(levels)) with the
    lowest and highest levels bounding the interval."""
    alpha = 1.0 - (levels[-1] - levels[0])
    coverage = round(100 * (levels[-1] - levels[0]))
    out: dict[str, float] = {}
    for j, seconds in enumerate(horizon_seconds):
        y = actual[:, j]
        for k, q in enumerate(levels):
            out[f"pinball_q{round(100 * q):02d}_{seconds}s"] = float(
                pinball_loss(y, predicted[:, j, k], q).mean()
            )
        out[f"pinball_{seconds}s"] = float(mean_pinball(y, predicted[:, j, :], levels).mean())
        low, high = predicted[:, j, 0], predicted[:, j, -1]
        out[f"interval_score_{coverage}_{seconds}s"] = float(
            interval_score(y, low, high, alpha).mean()
        )
        out[f"width_{coverage}_{seconds}s"] = float((high - low).mean())
    return out


def compare_to_baselines(
    actual: FloatArray,
    predicted: Mapping[str, FloatArray],
    levels: Sequence[float],
    horizon_steps: Sequence[int],
    horizon_seconds: Sequence[int],
    candidate: str,
) -> dict[str, float]:
    """The candidate's skill (1 - its mean pinball loss / the baseline's) and Diebold-Mariano
    p-value on the per-sample mean pinball loss, against every other forecaster, per horizon
    (`skill_vs_persistence_60s`, `dm_p_vs_persistence_60s`, `dm_stat_vs_persistence_60s`)."""
    out: dict[str, float] = {}
    for j, (steps, seconds) in enumerate(zip(horizon_steps, horizon_seconds, strict=True)):
        y = actual[:, j]
        mine = mean_pinball(y, predicted[candidate][:, j, :], levels)
        for baseline, theirs_pred in predicted.items():
            if baseline == candidate:
                continue
            theirs = mean_pinball(y, theirs_pred[:, j, :], levels)
            reference = float(theirs.mean())
            out[f"skill_vs_{baseline}_{seconds}s"] = (
                1.0 - float(mine.mean()) / reference if reference > 0 else 0.0
            )
            test = diebold_mariano(mine, theirs, lag=steps - 1)
            out[f"dm_stat_vs_{baseline}_{seconds}s"] = test.statistic
            out[f"dm_p_vs_{baseline}_{seconds}s"] = test.p_value
    return out
