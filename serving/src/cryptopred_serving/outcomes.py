"""Online evaluation: score a prediction once the candle at its target time is final."""

from __future__ import annotations

import math

from cryptopred.records import Prediction, PredictionOutcome


def score(
    prediction: Prediction, base_close: float, actual_close: float, now_ms: int
) -> PredictionOutcome:
    """Absolute error, persistence's error, direction hit and 80 % interval hit.

    `base_close` is the close at `window_end_ms` (what persistence predicts); a direction hit
    means the predicted and realised moves have the same sign (no move counts as down).
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
    )


def target_window_start_ms(prediction: Prediction) -> int:
    """Start of the candle whose close realises the prediction (it ends at target_ts_ms)."""
    return prediction.target_ts_ms - prediction.candle_seconds * 1000


def relative_error(outcome: PredictionOutcome) -> float:
    return outcome.abs_error / outcome.actual_close if outcome.actual_close else math.inf
