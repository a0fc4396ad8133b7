"""Persistence with intervals that follow volatility: the baselines a learned model must beat.

Each forecasts a zero log return (persistence) at every horizon and an interval from the last
`history_steps` rows only (so serving needs exactly those rows, see `baseline_predictor`),
fitted on the training window ends:

- `EmpiricalQuantiles`: the quantiles of the realised h-step returns inside the history.
- `EwmaVolatility`: an EWMA of squared one-step returns over the history, started at the
  training mean square; its decay is chosen on the training split by the mean pinball loss,
  the interval is that volatility times the quantiles of the training h-step returns
  standardised by it (so it is calibrated, not Gaussian).
- `GarchVolatility`: GARCH(1,1) with Student-t errors (the `arch` library) fitted on the
  training one-step returns and filtered over the history from its long-run variance; the
  h-step variance is the sum of the model's variance forecasts for steps 1..h, and the interval
  its root times the fitted Student-t quantiles.

`log_close` is the log close of every row; `ends` are window-end rows (forecast origins).
Both recursions are linear in their state, so the value over the last `history_steps` rows is
the whole-series recursion minus its state `history_steps - 1` rows earlier, decayed: one pass
serves every window end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from cryptopred_training.scores import mean_pinball

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]

EWMA_DECAYS = (0.8, 0.9, 0.94, 0.97, 0.98, 0.99, 0.995, 0.998)
#: GARCH is fitted on returns in basis points: the optimiser is poorly scaled for raw log returns
GARCH_SCALE = 1e4
DEFAULT_HISTORY_STEPS = 720


def step_returns(log_close: FloatArray, steps: int) -> FloatArray:
    """r[t] = log_close[t] - log_close[t - steps], known at t; NaN for the first `steps` rows."""
    out = np.full(log_close.shape[0], np.nan)
    out[steps:] = log_close[steps:] - log_close[:-steps]
    return out


def _intervals(scale: FloatArray, low_high: FloatArray) -> FloatArray:
    """(n, H, 3): [scale * low, 0, scale * high] per horizon; `scale` (n, H), `low_high` (H, 2)."""
    return np.stack([scale * low_high[:, 0], np.zeros_like(scale), scale * low_high[:, 1]], axis=2)


def windowed_recursion(
    inputs: FloatArray, coefficient: float, start: float, history_steps: int
) -> FloatArray:
    """s[t] = coefficient * s[t-1] + inputs[t], started at `start` on the first row of the last
    `history_steps` rows ending at t (inputs[0] of a series is not used: it has no return).

    Rows before a full history start at row 0."""
    n = inputs.shape[0]
    full = np.empty(n)
    state = start
    full[0] = state
    for t in range(1, n):
        state = coefficient * state + inputs[t]
        full[t] = state
    k = history_steps - 1
    if k <= 0 or n <= k:
        return full
    out = full.copy()
    out[k:] = full[k:] - coefficient**k * (full[:-k] - start)
    return out


@dataclass(frozen=True)
class EmpiricalQuantiles:
    """Empirical quantiles of the realised h-step returns inside the last `history_steps` rows."""

    steps: tuple[int, ...]
    quantiles: tuple[float, float, float]
    history_steps: int = DEFAULT_HISTORY_STEPS

    def predict(self, log_close: FloatArray, ends: IndexArray) -> FloatArray:
        out = np.zeros((len(ends), len(self.steps), 3))
        for j, h in enumerate(self.steps):
            count = self.history_steps - h
            if count < 2:
                raise ValueError(f"history_steps {self.history_steps} leaves no {h}-step returns")
            returns = np.concatenate([np.full(count - 1, np.nan), step_returns(log_close, h)])
            windows = sliding_window_view(returns, count)[ends]
            low, high = np.nanquantile(windows, [self.quantiles[0], self.quantiles[-1]], axis=1)
            out[:, j, 0], out[:, j, 2] = low, high
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"quantiles": list(self.quantiles)}


def ewma_variance(
    one_step: FloatArray, decay: float, start: float, history_steps: int
) -> FloatArray:
    """v[t] = decay * v[t-1] + (1 - decay) * r[t]^2 over the last `history_steps` rows."""
    squares = (1.0 - decay) * np.nan_to_num(one_step, nan=0.0) ** 2
    return windowed_recursion(squares, decay, start, history_steps)


def _standardised_bounds(
    targets: FloatArray, scale: FloatArray, quantiles: Sequence[float]
) -> FloatArray:
    """(H, 2) quantiles of the training targets divided by their forecast scale."""
    z = targets / np.where(scale > 0, scale, np.nan)
    return np.stack(
        [np.nanquantile(z, quantiles[0], axis=0), np.nanquantile(z, quantiles[-1], axis=0)],
        axis=1,
    )


def _mean_square(one_step: FloatArray, last_row: int) -> float:
    seen = one_step[: last_row + 1]
    seen = seen[np.isfinite(seen)]
    return float(np.mean(seen**2)) if seen.size else 0.0


@dataclass(frozen=True)
class EwmaVolatility:
    """EWMA volatility scaled to each horizon, with calibrated standardised quantiles."""

    steps: tuple[int, ...]
    decay: float
    start_variance: float
    low_high: FloatArray  # (H, 2)
    history_steps: int = DEFAULT_HISTORY_STEPS

    @classmethod
    def fit(
        cls,
        log_close: FloatArray,
        train_ends: IndexArray,
        train_targets: FloatArray,
        steps: Sequence[int],
        quantiles: Sequence[float],
        history_steps: int = DEFAULT_HISTORY_STEPS,
    ) -> EwmaVolatility:
        """The decay with the lowest mean pinball loss on the training ends."""
        one_step = step_returns(log_close, 1)
        start = _mean_square(one_step, int(train_ends[-1]))
        best: tuple[float, EwmaVolatility] | None = None
        for decay in EWMA_DECAYS:
            variance = ewma_variance(one_step, decay, start, history_steps)[train_ends]
            scale = _horizon_scale(variance, steps)
            bounds = _standardised_bounds(train_targets, scale, quantiles)
            candidate = cls(tuple(steps), decay, start, bounds, history_steps)
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
        one_step = step_returns(log_close, 1)
        variance = ewma_variance(one_step, self.decay, self.start_variance, self.history_steps)
        return _intervals(_horizon_scale(variance[ends], self.steps), self.low_high)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "start_variance": self.start_variance,
            "low_high": self.low_high.tolist(),
        }


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
    start_variance: float  # the long-run variance, or the training variance if not stationary
    history_steps: int = DEFAULT_HISTORY_STEPS

    @classmethod
    def fit(
        cls,
        log_close: FloatArray,
        train_ends: IndexArray,
        steps: Sequence[int],
        quantiles: Sequence[float],
        history_steps: int = DEFAULT_HISTORY_STEPS,
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
        persistence = alpha + beta
        start = omega / (1.0 - persistence) if persistence < 1 else float(np.var(returns))
        return cls(tuple(steps), omega, alpha, beta, nu, (low, high), start, history_steps)

    def one_step_variance(self, log_close: FloatArray) -> FloatArray:
        """sigma^2[t + 1 | t] for every row (bp^2), filtered over the last history_steps rows."""
        returns = np.nan_to_num(step_returns(log_close, 1) * GARCH_SCALE, nan=0.0)
        inputs = self.omega + self.alpha * returns * returns
        return windowed_recursion(inputs, self.beta, self.start_variance, self.history_steps)

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "omega": self.omega,
            "alpha": self.alpha,
            "beta": self.beta,
            "nu": self.nu,
            "t_low_high": list(self.t_low_high),
            "start_variance": self.start_variance,
        }


VolatilityModel = EmpiricalQuantiles | EwmaVolatility | GarchVolatility
BASELINE_KINDS = ("empirical", "ewma", "garch")


def volatility_from_dict(
    kind: str, params: dict[str, Any], steps: Sequence[int], history_steps: int
) -> VolatilityModel:
    """The model of `kind` from its `to_dict` (KeyError/TypeError/ValueError when malformed)."""
    steps = tuple(int(h) for h in steps)
    if kind == "empirical":
        low, mid, high = (float(q) for q in params["quantiles"])
        return EmpiricalQuantiles(steps, (low, mid, high), history_steps)
    if kind == "ewma":
        bounds = np.asarray(params["low_high"], dtype=np.float64)
        if bounds.shape != (len(steps), 2):
            raise ValueError(f"low_high has shape {bounds.shape}, expected ({len(steps)}, 2)")
        return EwmaVolatility(
            steps, float(params["decay"]), float(params["start_variance"]), bounds, history_steps
        )
    if kind == "garch":
        t_low, t_high = (float(v) for v in params["t_low_high"])
        return GarchVolatility(
            steps,
            float(params["omega"]),
            float(params["alpha"]),
            float(params["beta"]),
            float(params["nu"]),
            (t_low, t_high),
            float(params["start_variance"]),
            history_steps,
        )
    raise ValueError(f"unknown baseline kind {kind!r}; known: {', '.join(BASELINE_KINDS)}")


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
        history_steps: int = DEFAULT_HISTORY_STEPS,
    ) -> VolatilityBaselines:
        log_close = np.log(close)
        return cls(
            EmpiricalQuantiles(tuple(steps), quantiles, history_steps),
            EwmaVolatility.fit(
                log_close, train_ends, train_targets, steps, quantiles, history_steps
            ),
            GarchVolatility.fit(log_close, train_ends, steps, quantiles, history_steps),
        )

    def get(self, kind: str) -> VolatilityModel:
        """The baseline named `kind` (one of BASELINE_KINDS)."""
        models: dict[str, VolatilityModel] = {
            "empirical": self.empirical,
            "ewma": self.ewma,
            "garch": self.garch,
        }
        return models[kind]

    def predict(self, close: FloatArray, ends: IndexArray) -> dict[str, FloatArray]:
        log_close = np.log(close)
        return {kind: self.get(kind).predict(log_close, ends) for kind in BASELINE_KINDS}
