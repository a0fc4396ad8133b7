"""Request and response bodies of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, create_model

from cryptopred_core.records import INDICATOR_COLUMNS, Prediction


class CandleRowIn(BaseModel):
    """The candle fields of an indicator row, with the bounds the HTTP API checks."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    pair: str = Field(min_length=3, max_length=21)
    candle_seconds: int = Field(ge=1, le=86_400)
    window_start_ms: int = Field(ge=0)
    window_end_ms: int = Field(ge=0)
    open: float = Field(gt=0)
    high: float = Field(gt=0)
    low: float = Field(gt=0)
    close: float = Field(gt=0)
    volume: float = Field(ge=0)
    vwap: float = Field(gt=0)
    n_trades: int = Field(ge=0)
    final: bool = True


if TYPE_CHECKING:  # the type checker sees the candle fields; the indicators are made at runtime
    IndicatorRowIn = CandleRowIn
else:  # the candle fields, then a number or null for each of the record's indicator columns
    IndicatorRowIn = create_model(
        "IndicatorRowIn",
        __base__=CandleRowIn,
        __doc__="One indicator row of an explicit window (the `technical_indicators` columns).",
        __module__=__name__,
        **{name: (float | None, None) for name in INDICATOR_COLUMNS},
    )


class PredictRequest(BaseModel):
    """Predict every horizon for a pair; without `rows` the latest rows in the DB are used."""

    model_config = ConfigDict(extra="forbid")

    pair: str = Field(min_length=3, max_length=21, examples=["BTC/USD"])
    candle_seconds: int = Field(60, ge=1, le=86_400)
    # the setting max_rows_per_request (checked by bodies.validate_predict) is the limit;
    # this is its ceiling
    rows: list[IndicatorRowIn] | None = Field(None, max_length=100_000)


class Forecast(BaseModel):
    horizon_seconds: int
    target_ts_ms: int
    predicted_close: float
    predicted_return: float
    lower: float
    upper: float


class PredictResponse(BaseModel):
    pair: str
    candle_seconds: int
    model_name: str
    model_version: str
    window_end_ms: int
    forecasts: list[Forecast]


class _PredictionFields(BaseModel):
    """What the type checker sees of PredictionOut."""

    pair: str
    window_end_ms: int


if TYPE_CHECKING:
    PredictionOut = _PredictionFields
else:  # the `predictions` row: Prediction's fields, names and types, in its order
    PredictionOut = create_model(
        "PredictionOut",
        __doc__="One stored prediction (a row of `predictions`).",
        __module__=__name__,
        **{
            name: (typing.get_type_hints(Prediction)[name], ...)
            for name in Prediction.__struct_fields__
        },
    )


class ModelOut(BaseModel):
    pair: str
    candle_seconds: int
    name: str
    version: str | None
    alias: str | None
    model_kind: str | None = Field(
        None, description="what serves: transformer (passed the gate) or baseline"
    )
    baseline: str | None = Field(None, description="the baseline's kind: empirical, ewma, garch")
    reason: str | None = Field(None, description="why this version serves (the gate's words)")
    trained_from_ms: int | None
    trained_to_ms: int | None
    window_steps: int | None
    horizon_seconds: list[int]
    test_metrics: dict[str, float]
    gate_metrics: dict[str, float] = Field(default_factory=dict)


class LiveMetric(BaseModel):
    model_name: str
    model_version: str
    horizon_seconds: int
    n: int
    mae: float
    persistence_mae: float
    direction_accuracy: float
    interval_coverage: float
    pinball_loss: float | None = Field(
        None, description="mean pinball loss of the 0.1/0.5/0.9 quantiles (price units)"
    )
    baseline_pinball_loss: float | None = Field(
        None, description="the baseline version's, over the outcomes that have both"
    )
    baseline_n: int = Field(0, description="outcomes with both pinball losses")
    skill: float | None = Field(
        None, description="1 - pinball loss / the baseline's, over those outcomes; null without"
    )
