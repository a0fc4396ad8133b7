"""Persistence (zero return) and ridge baselines with empirical residual intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cryptopred_training.features import gather_windows

FloatArray = npt.NDArray[np.float64]


def _residual_quantiles(residuals: FloatArray, quantiles: Sequence[float]) -> FloatArray:
    """(n_horizons, 2): the low and high quantile of each horizon's residuals."""
    return np.stack(
        [
            np.nanquantile(residuals, quantiles[0], axis=0),
            np.nanquantile(residuals, quantiles[-1], axis=0),
        ],
        axis=1,
    )


def _with_interval(point: FloatArray, bounds: FloatArray) -> FloatArray:
    """(n, n_horizons, 3): point + low residual, point, point + high residual."""
    return np.stack([point + bounds[:, 0], point, point + bounds[:, 1]], axis=2)


@dataclass(frozen=True)
class PersistenceModel:
    """Predicts a zero log return; the interval is the train quantiles of the actual returns."""

    bounds: FloatArray

    @classmethod
    def fit(cls, train_targets: FloatArray, quantiles: Sequence[float]) -> PersistenceModel:
        return cls(_residual_quantiles(train_targets, quantiles))

    def predict(self, n_rows: int) -> FloatArray:
        return _with_interval(np.zeros((n_rows, self.bounds.shape[0])), self.bounds)


def ridge_inputs(
    features: npt.NDArray[np.float32], ends: npt.NDArray[np.int64], steps: int
) -> FloatArray:
    """The normalised features of the last `steps` rows of each window, flattened."""
    windows = gather_windows(features, ends, steps)
    return windows.reshape(len(ends), -1).astype(np.float64)


@dataclass(frozen=True)
class RidgeModel:
    """Closed-form ridge regression per horizon with an unpenalised intercept."""

    weights: FloatArray
    intercept: FloatArray
    bounds: FloatArray

    @classmethod
    def fit(
        cls, inputs: FloatArray, targets: FloatArray, alpha: float, quantiles: Sequence[float]
    ) -> RidgeModel:
        x_mean = inputs.mean(axis=0)
        y_mean = targets.mean(axis=0)
        xc = inputs - x_mean
        gram = xc.T @ xc + alpha * np.eye(inputs.shape[1])
        weights = np.linalg.solve(gram, xc.T @ (targets - y_mean))
        intercept = y_mean - x_mean @ weights
        residuals = targets - (inputs @ weights + intercept)
        return cls(weights, intercept, _residual_quantiles(residuals, quantiles))

    def predict(self, inputs: FloatArray) -> FloatArray:
        return _with_interval(inputs @ self.weights + self.intercept, self.bounds)
