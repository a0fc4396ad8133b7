"""The HTTP bodies against the record contract they mirror."""

from __future__ import annotations

import typing

import msgspec
import pytest
from pydantic import ValidationError

from cryptopred_core.records import INDICATOR_COLUMNS, IndicatorRow, Prediction, field_names
from cryptopred_serving.schemas import Forecast, IndicatorRowIn, PredictionOut, PredictRequest


def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "pair": "BTC/USD",
        "candle_seconds": 60,
        "window_start_ms": 1_700_000_040_000,
        "window_end_ms": 1_700_000_100_000,
        "open": 10.0,
        "high": 12.0,
        "low": 9.0,
        "close": 11.0,
        "volume": 3.5,
        "vwap": 10.5,
        "n_trades": 7,
        "rsi_14": 55.0,
    }
    row.update(changes)
    return row


def test_indicator_row_body_has_the_record_fields_in_order() -> None:
    """A column added to IndicatorRow and not to the body would be unreachable over HTTP."""
    assert tuple(IndicatorRowIn.model_fields) == IndicatorRow.__struct_fields__
    for name in INDICATOR_COLUMNS:
        assert IndicatorRowIn.model_fields[name].default is None, name
        assert IndicatorRowIn.model_fields[name].annotation == float | None, name
    required = {n for n, f in IndicatorRowIn.model_fields.items() if f.is_required()}
    assert required == set(IndicatorRow.__struct_fields__) - {"final", *INDICATOR_COLUMNS}


def test_prediction_bodies_have_the_record_fields_and_types() -> None:
    """The answers carry Prediction's fields under its names and types."""
    hints = typing.get_type_hints(Prediction)
    assert tuple(PredictionOut.model_fields) == field_names(Prediction)
    for model in (PredictionOut, Forecast):
        for name, field in model.model_fields.items():
            assert field.annotation == hints[name], (model.__name__, name)


def test_a_valid_body_row_makes_the_same_record() -> None:
    body = IndicatorRowIn(**_row())  # type: ignore[arg-type]
    record = IndicatorRow(**body.model_dump())
    assert msgspec.structs.asdict(record) == {
        **dict.fromkeys(INDICATOR_COLUMNS),
        **_row(),
        "final": True,
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"close": 0.0}, "close"),
        ({"volume": -1.0}, "volume"),
        ({"candle_seconds": 0}, "candle_seconds"),
        ({"rsi_14": float("nan")}, "rsi_14"),
        ({"unknown": 1.0}, "unknown"),
    ],
)
def test_a_bad_row_is_rejected_naming_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PredictRequest(pair="BTC/USD", rows=[_row(**changes)])  # type: ignore[list-item]
    (error,) = caught.value.errors()
    assert error["loc"] == ("rows", 0, field)
