"""Online evaluation: score a prediction once the candle at its target time is final."""

from __future__ import annotations

import math

from cryptopred_core.records import Prediction, PredictionOutcome

QUANTILES = (0.1, 0.5, 0.9)  # what lower, predicted_close and upper stand for


def pinball_price(lower: float, median: float, upper: float, actual: float) -> float:
    """Mean pinball loss of the 0.1 / 0.5 / 0.9 quantile forecasts (price units)."""
    total = 0.0
    for q, forecast in zip(QUANTILES, (lower, median, upper), strict=True):
        error = actual - forecast
        total += max(q * error, (q - 1.0) * error)
    return total / len(QUANTILES)


def score(
    prediction: Prediction,
    base_close: float,
    actual_close: float,
    now_ms: int,
    baseline: tuple[str, float] | None = None,
) -> PredictionOutcome:
    """Absolute error, persistence's error, direction hit, 80 % interval hit and pinball loss.

    `base_close` is the close at `window_end_ms` (what persistence predicts); a direction hit
    means the predicted and realised moves have the same sign (no move counts as down).
    `baseline` is (version, pinball loss) of the baseline's forecast for the same window.
    """
    predicted_up = prediction.predicted_close > base_close
    actual_up = actual_close > base_close
    return PredictionOutcome(
        pair=prediction.pair,
        candle_seconds=prediction.candle_seconds,
        horizon_seconds=prediction.horizon_seconds,
        window_end_ms=prediction.window_end_ms,
        model_name=prediction.model_name,
        model_version=prediction.model_version,
        target_ts_ms=prediction.target_ts_ms,
        base_close=base_close,
        predicted_close=prediction.predicted_close,
        actual_close=actual_close,
        abs_error=abs(prediction.predicted_close - actual_close),
        persistence_abs_error=abs(base_close - actual_close),
        direction_hit=predicted_up == actual_up,
        interval_hit=prediction.lower <= actual_close <= prediction.upper,
        created_ms=now_ms,
        pinball_loss=pinball_price(
            prediction.lower, prediction.predicted_close, prediction.upper, actual_close
        ),
        baseline_pinball_loss=baseline[1] if baseline else None,
        baseline_version=baseline[0] if baseline else None,
    )


def target_window_start_ms(prediction: Prediction) -> int:
    """Start of the candle whose close realises the prediction (it ends at target_ts_ms)."""
    return prediction.target_ts_ms - prediction.candle_seconds * 1000


def relative_error(outcome: PredictionOutcome) -> float:
    return outcome.abs_error / outcome.actual_close if outcome.actual_close else math.inf
