"""Persistence with intervals that follow volatility: the baselines a learned model must beat.

Each forecasts a zero log return (persistence) at every horizon and an interval from the past
only, fitted on the training window ends:

- `EmpiricalQuantiles`: the quantiles of the last `lookback_steps` realised h-step returns.
- `EwmaVolatility`: an EWMA of squared one-step returns, its decay chosen on the training
  split by the mean pinball loss; the interval is that volatility times the quantiles of the
  training h-step returns standardised by it (so it is calibrated, not Gaussian).
- `GarchVolatility`: GARCH(1,1) with Student-t errors (the `arch` library) fitted on the
  training one-step returns, filtered over the whole series with those parameters; the h-step
  variance is the sum of the model's variance forecasts for steps 1..h, and the interval its
  root times the fitted Student-t quantiles.

`log_close` is the log close of every row; `ends` are window-end rows (forecast origins).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from cryptopred_training.scores import mean_pinball

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]

EWMA_DECAYS = (0.8, 0.9, 0.94, 0.97, 0.98, 0.99, 0.995, 0.998)
#: GARCH is fitted on returns in basis points: the optimiser is poorly scaled for raw log returns
GARCH_SCALE = 1e4


def step_returns(log_close: FloatArray, steps: int) -> FloatArray:
    """r[t] = log_close[t] - log_close[t - steps], known at t; NaN for the first `steps` rows."""
    out = np.full(log_close.shape[0], np.nan)
    out[steps:] = log_close[steps:] - log_close[:-steps]
    return out


def _intervals(scale: FloatArray, low_high: FloatArray) -> FloatArray:
    """(n, H, 3): [scale * low, 0, scale * high] per horizon; `scale` (n, H), `low_high` (H, 2)."""
    return np.stack([scale * low_high[:, 0], np.zeros_like(scale), scale * low_high[:, 1]], axis=2)


@dataclass(frozen=True)
class EmpiricalQuantiles:
    """Rolling empirical quantiles of the last `lookback_steps` realised h-step returns."""

    steps: tuple[int, ...]
    quantiles: tuple[float, float, float]
    lookback_steps: int = 1440

    def predict(self, log_close: FloatArray, ends: IndexArray) -> FloatArray:
        out = np.zeros((len(ends), len(self.steps), 3))
        padded_to = self.lookback_steps - 1
        for j, h in enumerate(self.steps):
            returns = np.concatenate([np.full(padded_to, np.nan), step_returns(log_close, h)])
            windows = sliding_window_view(returns, self.lookback_steps)[ends]
            low, high = np.nanquantile(windows, [self.quantiles[0], self.quantiles[-1]], axis=1)
            out[:, j, 0], out[:, j, 2] = low, high
        return out


def ewma_variance(one_step: FloatArray, decay: float) -> FloatArray:
    """v[t] = decay * v[t-1] + (1 - decay) * r[t]^2 (NaN returns skipped), started at the
    mean square of the first 100 finite returns."""
    finite = np.nan_to_num(one_step, nan=0.0)
    seen = np.isfinite(one_step)
    start = float(np.mean(finite[seen][:100] ** 2)) if seen.any() else 0.0
    out = np.empty_like(finite)
    v = start
    for t in range(finite.shape[0]):
        if seen[t]:
            v = decay * v + (1.0 - decay) * finite[t] * finite[t]
        out[t] = v
    return out


def _standardised_bounds(
    targets: FloatArray, scale: FloatArray, quantiles: Sequence[float]
) -> FloatArray:
    """(H, 2) quantiles of the training targets divided by their forecast scale."""
    z = targets / np.where(scale > 0, scale, np.nan)
    return np.stack(
        [np.nanquantile(z, quantiles[0], axis=0), np.nanquantile(z, quantiles[-1], axis=0)],
        axis=1,
    )


@dataclass(frozen=True)
class EwmaVolatility:
    """EWMA volatility scaled to each horizon, with calibrated standardised quantiles."""

    steps: tuple[int, ...]
    decay: float
    low_high: FloatArray  # (H, 2)

    @classmethod
    def fit(
        cls,
        log_close: FloatArray,
        train_ends: IndexArray,
        train_targets: FloatArray,
        steps: Sequence[int],
        quantiles: Sequence[float],
    ) -> EwmaVolatility:
        """The decay with the lowest mean pinball loss on the training ends."""
        one_step = step_returns(log_close, 1)
        best: tuple[float, EwmaVolatility] | None = None
        for decay in EWMA_DECAYS:
            scale = _horizon_scale(ewma_variance(one_step, decay)[train_ends], steps)
            bounds = _standardised_bounds(train_targets, scale, quantiles)
            candidate = cls(tuple(steps), decay, bounds)
            predicted = _intervals(scale, bounds)
            loss = float(
                np.mean(
                    [
                        mean_pinball(train_targets[:, j], predicted[:, j, :], quantiles).mean()
                        for j in range(len(steps))
                    ]
                )
            )
            if best is None or loss < best[0]:
                best = (loss, candidate)
        assert best is not None
        return best[1]

    def predict(self, log_close: FloatArray, ends: IndexArray) -> FloatArray:
        variance = ewma_variance(step_returns(log_close, 1), self.decay)[ends]
        return _intervals(_horizon_scale(variance, self.steps), self.low_high)


def _horizon_scale(one_step_variance: FloatArray, steps: Sequence[int]) -> FloatArray:
    """(n, H) sqrt(h * v): the h-step scale of a one-step variance under independence."""
    return np.sqrt(np.outer(one_step_variance, np.asarray(steps, dtype=np.float64)))


@dataclass(frozen=True)
class GarchVolatility:
    """GARCH(1,1) with Student-t errors; parameters in basis points (GARCH_SCALE)."""

    steps: tuple[int, ...]
    omega: float
    alpha: float
    beta: float
    nu: float
    t_low_high: tuple[float, float]  # unit-variance Student-t quantiles

    @classmethod
    def fit(
        cls,
        log_close: FloatArray,
        train_ends: IndexArray,
        steps: Sequence[int],
        quantiles: Sequence[float],
    ) -> GarchVolatility:
        from arch import arch_model
        from arch.univariate import StudentsT

        returns = step_returns(log_close, 1)[: int(train_ends[-1]) + 1] * GARCH_SCALE
        returns = returns[np.isfinite(returns)]
        model = arch_model(returns, mean="Zero", vol="GARCH", p=1, q=1, dist="t", rescale=False)
        fitted = model.fit(disp="off", show_warning=False)
        omega, alpha, beta, nu = (
            float(fitted.params[k]) for k in ("omega", "alpha[1]", "beta[1]", "nu")
        )
        t = StudentsT()
        low, high = (float(t.ppf(q, [nu])) for q in (quantiles[0], quantiles[-1]))
        return cls(tuple(steps), omega, alpha, beta, nu, (low, high))

    def one_step_variance(self, log_close: FloatArray) -> FloatArray:
        """sigma^2[t + 1 | t] for every row (bp^2), filtered with the fitted parameters."""
        returns = np.nan_to_num(step_returns(log_close, 1) * GARCH_SCALE, nan=0.0)
        persistence = self.alpha + self.beta
        long_run = self.omega / (1.0 - persistence) if persistence < 1 else float(np.var(returns))
        out = np.empty_like(returns)
        v = long_run
        for t in range(returns.shape[0]):
            v = self.omega + self.alpha * returns[t] * returns[t] + self.beta * v
            out[t] = v
        return out

    def predict(self, log_close: FloatArray, ends: IndexArray) -> FloatArray:
        next_variance = self.one_step_variance(log_close)[ends]
        persistence = self.alpha + self.beta
        scale = np.empty((len(ends), len(self.steps)))
        for j, h in enumerate(self.steps):
            if persistence < 1:
                long_run = self.omega / (1.0 - persistence)
                decay = np.sum(persistence ** np.arange(h))
                total = h * long_run + decay * (next_variance - long_run)
            else:
                total = h * next_variance
            scale[:, j] = np.sqrt(np.maximum(total, 0.0)) / GARCH_SCALE
        return _intervals(scale, np.tile(np.asarray(self.t_low_high), (len(self.steps), 1)))


@dataclass(frozen=True)
class VolatilityBaselines:
    """The three baselines fitted on one training split, predicted together by name."""

    empirical: EmpiricalQuantiles
    ewma: EwmaVolatility
    garch: GarchVolatility

    @classmethod
    def fit(
        cls,
        close: FloatArray,
        train_ends: IndexArray,
        train_targets: FloatArray,
        steps: Sequence[int],
        quantiles: tuple[float, float, float],
    ) -> VolatilityBaselines:
        log_close = np.log(close)
        return cls(
            EmpiricalQuantiles(tuple(steps), quantiles),
            EwmaVolatility.fit(log_close, train_ends, train_targets, steps, quantiles),
            GarchVolatility.fit(log_close, train_ends, steps, quantiles),
        )

    def predict(self, close: FloatArray, ends: IndexArray) -> dict[str, FloatArray]:
        log_close = np.log(close)
        return {
            "empirical": self.empirical.predict(log_close, ends),
            "ewma": self.ewma.predict(log_close, ends),
            "garch": self.garch.predict(log_close, ends),
        }
