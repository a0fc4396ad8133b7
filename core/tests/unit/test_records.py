import math
from types import SimpleNamespace

import msgspec
import pytest

from cryptopred_core.records import (
    INDICATOR_COLUMNS,
    PAIR_PATTERN,
    Candle,
    DeadLetter,
    IndicatorRow,
    Prediction,
    RecordError,
    Trade,
    TradeWire,
    _explain_candle,
    decode,
    encode,
    field_names,
    to_dict,
)

TS = 1_700_000_000_000


def trade(**kw):
    base = dict(
        pair="BTC/USD", price=50_000.5, qty=0.01, side="buy", trade_id=7, ts_ms=TS, source="test"
    )
    return Trade(**{**base, **kw})


def candle(**kw):
    base = dict(
        pair="BTC/USD",
        candle_seconds=60,
        window_start_ms=1_699_999_980_000,
        window_end_ms=1_700_000_040_000,
        open=10.0,
        high=12.0,
        low=9.0,
        close=11.0,
        volume=3.0,
        vwap=10.5,
        n_trades=4,
        final=True,
    )
    return Candle(**{**base, **kw})


def test_trade_round_trips_through_json():
    t = trade()
    assert decode(encode(t), Trade) == t
    assert decode(encode(t).decode(), Trade) == t


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("price", math.nan, "price: must be a finite number > 0"),
        ("price", -1.0, "price: must be a finite number > 0"),
        ("price", 0.0, "price"),
        ("qty", math.inf, "qty: must be a finite number > 0"),
        ("pair", "BTCUSD", "pair: malformed"),
        ("ts_ms", 1_700_000_000, "ts_ms"),
        ("trade_id", -3, "trade_id"),
        ("source", "", "source"),
    ],
)
def test_bad_trades_are_rejected_with_a_reason(field, value, words):
    with pytest.raises(RecordError) as info:
        trade(**{field: value})
    assert words in info.value.reason


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (
            b'{"pair":"BTC/USD","price":-2,"qty":1,"side":"buy","trade_id":1,"ts_ms":1700000000000,'
            b'"source":"x"}',
            "price",
        ),
        (
            b'{"pair":"BTC/USD","price":2,"qty":1,"side":"hold","trade_id":1,"ts_ms":1700000000000,'
            b'"source":"x"}',
            "side",
        ),
        (b'{"pair":"BTC/USD"}', "missing required field"),
        (b"not json", "malformed JSON"),
        (b'{"pair":"BTC/USD","price":NaN}', "malformed JSON"),
    ],
)
def test_decoding_bad_payloads_names_the_problem(payload, words):
    with pytest.raises(RecordError) as info:
        decode(payload, Trade)
    assert words in info.value.reason


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("pair", "BTCUSD", "pair: malformed"),
        ("pair", "btc/usd", "pair: malformed"),
        ("price", -1.0, "price"),
        ("qty", 0.0, "qty"),
        ("ts_ms", 1_700_000_000, "ts_ms"),
        ("trade_id", -3, "trade_id"),
        ("source", "", "source"),
        ("side", "hold", "side"),
    ],
)
def test_the_wire_decoder_checks_what_trade_checks(field, value, words):
    good = trade()
    wire = decode(encode(good), TradeWire)
    assert to_dict(wire) == to_dict(good)
    raw = msgspec.json.encode({**to_dict(good), field: value})
    for _ in range(2):  # the pair check is cached for good pairs only
        with pytest.raises(RecordError) as info:
            decode(raw, TradeWire)
        assert words in info.value.reason


def test_candle_invariants():
    assert candle().close == 11.0
    with pytest.raises(RecordError, match="window_end_ms"):
        candle(window_end_ms=1_700_000_000_000)
    with pytest.raises(RecordError, match="multiple"):
        candle(window_start_ms=1_699_999_981_000, window_end_ms=1_700_000_041_000)
    with pytest.raises(RecordError, match="high/low"):
        candle(high=10.5)
    with pytest.raises(RecordError, match="volume"):
        candle(volume=-1.0)


_ODD_VALUES = (math.nan, math.inf, -math.inf, -1.0, 0.0, 8.5, 9.0, 12.0, 13.0, 1e308)


@pytest.mark.parametrize("field", [f for f in field_names(Candle) if f != "final"])
def test_the_one_expression_candle_check_agrees_with_the_rule_by_rule_one(field):
    odd = {
        "pair": ["BTCUSD", "btc/usd", "ETH/EUR", ""],
        "candle_seconds": [-60, 0, 1, 30, 300],
        "window_start_ms": [0, 1_699_999_980_001, 1_699_999_920_000, 4_102_444_800_000],
        "window_end_ms": [0, 1_700_000_039_999, 1_700_000_100_000],
        "n_trades": [-1, 0, 10**12],
    }.get(field, _ODD_VALUES)
    for value in odd:
        kw = {**to_dict(candle()), field: value}
        try:
            _explain_candle(SimpleNamespace(**kw))  # the rules one by one, on unchecked values
            expected = None
        except RecordError as exc:
            expected = exc.reason
        try:
            Candle(**kw)
            got = None
        except RecordError as exc:
            got = exc.reason
        assert got == expected, (field, value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_any_non_finite_indicator_is_named_even_beside_large_ones(value):
    base = to_dict(candle())
    assert IndicatorRow(**base, sma_7=1e308, sma_14=1e308, obv=0.0).sma_7 == 1e308  # sum overflows
    with pytest.raises(RecordError, match="mfi_14"):
        IndicatorRow(**base, sma_7=1e308, mfi_14=value)


def test_indicator_row_extends_candle_and_rejects_nan_indicators():
    fields = field_names(IndicatorRow)
    assert fields[: len(field_names(Candle))] == field_names(Candle)
    for name in (
        "sma_7",
        "ema_60",
        "rsi_14",
        "macd_7",
        "macdsignal_7",
        "macdhist_7",
        "obv",
        "atr_14",
        "adx_14",
        "bbands_upper_20",
        "bbands_middle_20",
        "bbands_lower_20",
        "mfi_14",
    ):
        assert name in fields
    base = {n: getattr(candle(), n) for n in field_names(Candle)}
    row = IndicatorRow(**base, sma_7=10.0)
    assert row.sma_14 is None
    assert decode(encode(row), IndicatorRow) == row
    with pytest.raises(RecordError, match="rsi_7"):
        IndicatorRow(**base, rsi_7=math.nan)


def test_indicator_columns_are_the_row_fields_after_the_candle_fields():
    assert len(INDICATOR_COLUMNS) == 22
    assert field_names(IndicatorRow) == (*field_names(Candle), *INDICATOR_COLUMNS)
    row = IndicatorRow(**to_dict(candle()))
    assert all(getattr(row, name) is None for name in INDICATOR_COLUMNS)


@pytest.mark.parametrize(
    ("pair", "ok"),
    [
        ("BTC/USD", True),
        ("USDT/EUR", True),
        ("1INCH/USD", True),
        ("btc/usd", False),
        ("BTCUSD", False),
        ("B/USD", False),
        ("BTC/USD ", False),
        ("BTC-USD", False),
    ],
)
def test_the_pair_pattern_is_the_record_rule(pair, ok):
    assert bool(PAIR_PATTERN.fullmatch(pair)) is ok
    if ok:
        assert trade(pair=pair).pair == pair
    else:
        with pytest.raises(RecordError, match="pair"):
            trade(pair=pair)


def test_prediction_checks_its_target_time_and_interval():
    ok = dict(
        pair="ETH/EUR",
        candle_seconds=60,
        horizon_seconds=300,
        window_end_ms=TS,
        target_ts_ms=TS + 300_000,
        predicted_close=2000.0,
        predicted_return=0.001,
        lower=1990.0,
        upper=2010.0,
        model_name="ETH-EUR-60s",
        model_version="3",
        created_ms=TS,
    )
    assert decode(encode(Prediction(**ok)), Prediction) == Prediction(**ok)
    with pytest.raises(RecordError, match="target_ts_ms"):
        Prediction(**{**ok, "target_ts_ms": TS})
    with pytest.raises(RecordError, match="lower"):
        Prediction(**{**ok, "lower": 2020.0})


def test_dead_letter_keeps_the_raw_payload():
    dl = DeadLetter(stage="ingest", reason="price: bad", raw='{"x":1}', ts_ms=TS)
    assert decode(encode(dl), DeadLetter).raw == '{"x":1}'
    with pytest.raises(RecordError):
        DeadLetter(stage="", reason="r", raw="", ts_ms=TS)
