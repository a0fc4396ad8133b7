"""Record types shared by every stage, with validation and the one JSON codec.

Each record validates itself on construction and on decoding; a bad value raises
`RecordError` whose `reason` names the field and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import math
import re
from functools import cache
from typing import Annotated, Any, Literal, TypeVar

import msgspec

MIN_TS_MS = 1_230_768_000_000  # 2009-01-01, before any crypto exchange traded
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01

BIGINT_MAX = 2**63 - 1  # the DB's integer columns are BIGINT
#: a dead letter carries at most this many bytes of the raw record (plus its size and hash)
DEAD_LETTER_RAW_MAX_BYTES = 4096

#: a trading pair as BASE/QUOTE in capitals, e.g. BTC/USD (match it with `fullmatch`)
PAIR_PATTERN = re.compile(r"[A-Z0-9]{2,10}/[A-Z0-9]{2,10}")


class RecordError(ValueError):
    """A record failed validation or decoding; `reason` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _pair(value: str) -> None:
    if not PAIR_PATTERN.fullmatch(value):
        raise RecordError(f"pair: malformed {value!r}, expected BASE/QUOTE like BTC/USD")


_GOOD_PAIRS: set[str] = set()  # pairs whose pattern was checked (a regex costs ~1 us/record)
_GOOD_PAIRS_MAX = 10_000
_INF = math.inf
# vwap = sum(price * qty) / sum(qty) may round a few ulps past high or low
_VWAP_LOW = 1 - 1e-9
_VWAP_HIGH = 1 + 1e-9


def _known_pair(value: str) -> bool:
    """Whether `value` matches the pair pattern, remembering the pairs that do."""
    if value in _GOOD_PAIRS:
        return True
    if not PAIR_PATTERN.fullmatch(value):
        return False
    if len(_GOOD_PAIRS) >= _GOOD_PAIRS_MAX:
        _GOOD_PAIRS.clear()
    _GOOD_PAIRS.add(value)
    return True


def _positive(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise RecordError(f"{name}: must be a finite number > 0, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise RecordError(f"{name}: must be a finite number >= 0, got {value!r}")


def _timestamp(name: str, value: int) -> None:
    if not MIN_TS_MS <= value < MAX_TS_MS:
        raise RecordError(f"{name}: {value} ms is outside 2009..2100; expected epoch milliseconds")


class Trade(msgspec.Struct, frozen=True, kw_only=True):
    """One exchange trade."""

    pair: str
    price: float
    qty: float
    side: Literal["buy", "sell"]
    trade_id: int | None
    ts_ms: int
    source: str

    def __post_init__(self) -> None:
        _pair(self.pair)
        _positive("price", self.price)
        _positive("qty", self.qty)
        _timestamp("ts_ms", self.ts_ms)
        if self.trade_id is not None and not 0 <= self.trade_id <= BIGINT_MAX:
            raise RecordError(f"trade_id: must be in 0..2**63-1, got {self.trade_id}")
        if not self.source:
            raise RecordError("source: must not be empty")


_Price = Annotated[float, msgspec.Meta(gt=0)]
_TsMs = Annotated[int, msgspec.Meta(ge=MIN_TS_MS, lt=MAX_TS_MS)]


class TradeWire(msgspec.Struct, frozen=True, kw_only=True):
    """The same record as Trade, for the hot decode path of the candle stage: the same rules
    are checked by msgspec's C decoder (JSON has no NaN or infinity), without __post_init__;
    the pair's pattern is checked by `decode` once per distinct pair."""

    pair: str
    price: _Price
    qty: _Price
    side: Literal["buy", "sell"]
    trade_id: Annotated[int, msgspec.Meta(ge=0, le=BIGINT_MAX)] | None
    ts_ms: _TsMs
    source: Annotated[str, msgspec.Meta(min_length=1)]


class Candle(msgspec.Struct, frozen=True, kw_only=True):
    """An OHLCV candle of one pair and width; `final` once its window has closed."""

    pair: str
    candle_seconds: int
    window_start_ms: int
    window_end_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float
    n_trades: int
    final: bool

    def __post_init__(self) -> None:
        _validate_candle(self)

    @classmethod
    def flat(
        cls, pair: str, candle_seconds: int, window_start_ms: int, price: float, final: bool = True
    ) -> Candle:
        """A window without trades: open, high, low, close and vwap at `price`, no volume."""
        return Candle(
            pair=pair,
            candle_seconds=candle_seconds,
            window_start_ms=window_start_ms,
            window_end_ms=window_start_ms + candle_seconds * 1000,
            open=price,
            high=price,
            low=price,
            close=price,
            volume=0.0,
            vwap=price,
            n_trades=0,
            final=final,
        )


def _validate_candle(c: Candle) -> None:
    """The rules below in one expression (records are decoded at every stage); a failing
    record is explained by `_explain_candle`, which checks them one by one."""
    o, h, lo, cl, secs, start = c.open, c.high, c.low, c.close, c.candle_seconds, c.window_start_ms
    if (
        secs > 0
        and MIN_TS_MS <= start < MAX_TS_MS
        and start % (secs * 1000) == 0
        and c.window_end_ms == start + secs * 1000
        and 0.0 < o < _INF
        and 0.0 < h < _INF
        and 0.0 < lo < _INF
        and 0.0 < cl < _INF
        and 0.0 < c.vwap < _INF
        and 0.0 <= c.volume < _INF
        and 0 <= c.n_trades <= BIGINT_MAX
        and (c.volume > 0.0) == (c.n_trades > 0)
        and lo * _VWAP_LOW <= c.vwap <= h * _VWAP_HIGH
        and lo <= o
        and lo <= cl
        and h >= o
        and h >= cl
        and _known_pair(c.pair)
    ):
        return
    _explain_candle(c)


def _explain_candle(c: Candle) -> None:
    _pair(c.pair)
    if c.candle_seconds <= 0:
        raise RecordError(f"candle_seconds: must be > 0, got {c.candle_seconds}")
    width_ms = c.candle_seconds * 1000
    _timestamp("window_start_ms", c.window_start_ms)
    if c.window_start_ms % width_ms:
        raise RecordError(f"window_start_ms: {c.window_start_ms} is not a multiple of {width_ms}")
    if c.window_end_ms != c.window_start_ms + width_ms:
        raise RecordError(f"window_end_ms: must be window_start_ms + {width_ms}")
    for name in ("open", "high", "low", "close", "vwap"):
        _positive(name, getattr(c, name))
    _non_negative("volume", c.volume)
    if not 0 <= c.n_trades <= BIGINT_MAX:
        raise RecordError(f"n_trades: must be in 0..2**63-1, got {c.n_trades}")
    if (c.volume > 0) != (c.n_trades > 0):
        raise RecordError(
            f"volume/n_trades: volume {c.volume!r} with {c.n_trades} trades "
            "(a window has volume exactly when it has trades)"
        )
    if c.low > min(c.open, c.close) or c.high < max(c.open, c.close):
        raise RecordError("high/low: must bound open and close")
    if not c.low * _VWAP_LOW <= c.vwap <= c.high * _VWAP_HIGH:
        raise RecordError(f"vwap: {c.vwap!r} is outside [low {c.low!r}, high {c.high!r}]")


class IndicatorRow(Candle, frozen=True, kw_only=True):
    """A candle with its technical indicators; None where history is too short."""

    sma_7: float | None = None
    sma_14: float | None = None
    sma_21: float | None = None
    sma_60: float | None = None
    ema_7: float | None = None
    ema_14: float | None = None
    ema_21: float | None = None
    ema_60: float | None = None
    rsi_7: float | None = None
    rsi_14: float | None = None
    rsi_21: float | None = None
    rsi_60: float | None = None
    macd_7: float | None = None
    macdsignal_7: float | None = None
    macdhist_7: float | None = None
    obv: float | None = None
    atr_14: float | None = None
    adx_14: float | None = None
    bbands_upper_20: float | None = None
    bbands_middle_20: float | None = None
    bbands_lower_20: float | None = None
    mfi_14: float | None = None

    def __post_init__(self) -> None:
        _validate_candle(self)
        values = msgspec.structs.astuple(self)[_N_CANDLE_FIELDS:]
        # one C-level sum: finite unless some value is not (or the sum overflows)
        if math.isfinite(sum(filter(None, values))):  # (None and 0.0 dropped)
            return
        for name in INDICATOR_COLUMNS:
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise RecordError(f"{name}: must be finite or null, got {value!r}")


_N_CANDLE_FIELDS = len(Candle.__struct_fields__)
#: the indicator columns: IndicatorRow's fields after Candle's, in declaration order
INDICATOR_COLUMNS: tuple[str, ...] = IndicatorRow.__struct_fields__[_N_CANDLE_FIELDS:]


class Prediction(msgspec.Struct, frozen=True, kw_only=True):
    """A forecast of one pair's close `horizon_seconds` after `window_end_ms`."""

    pair: str
    candle_seconds: int
    horizon_seconds: int
    window_end_ms: int
    target_ts_ms: int
    predicted_close: float
    predicted_return: float
    lower: float
    upper: float
    model_name: str
    model_version: str
    created_ms: int

    def __post_init__(self) -> None:
        _pair(self.pair)
        if self.candle_seconds <= 0 or self.horizon_seconds <= 0:
            raise RecordError("candle_seconds/horizon_seconds: must be > 0")
        _timestamp("window_end_ms", self.window_end_ms)
        if self.target_ts_ms != self.window_end_ms + self.horizon_seconds * 1000:
            raise RecordError("target_ts_ms: must be window_end_ms + horizon_seconds * 1000")
        for name in ("predicted_close", "lower", "upper"):
            _positive(name, getattr(self, name))
        if not math.isfinite(self.predicted_return):
            raise RecordError(f"predicted_return: must be finite, got {self.predicted_return!r}")
        if self.lower > self.upper:
            raise RecordError(f"lower/upper: lower {self.lower} exceeds upper {self.upper}")
        if not self.model_name or not self.model_version:
            raise RecordError("model_name/model_version: must not be empty")


class PredictionOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """A prediction scored against the realised close at its target time."""

    pair: str
    candle_seconds: int
    horizon_seconds: int
    window_end_ms: int
    model_name: str
    model_version: str
    target_ts_ms: int
    base_close: float
    predicted_close: float
    actual_close: float
    abs_error: float
    persistence_abs_error: float
    direction_hit: bool
    interval_hit: bool
    created_ms: int
    # mean pinball loss over the 0.1/0.5/0.9 quantiles (price units); None in older rows
    pinball_loss: float | None = None
    # the `baseline` alias version's pinball loss for the same window, when it differs from
    # this prediction's version and its forecast could be computed
    baseline_pinball_loss: float | None = None
    baseline_version: str | None = None

    def __post_init__(self) -> None:
        _pair(self.pair)
        for name in ("base_close", "predicted_close", "actual_close"):
            _positive(name, getattr(self, name))
        for name in ("abs_error", "persistence_abs_error", "pinball_loss", "baseline_pinball_loss"):
            value = getattr(self, name)
            if value is not None:
                _non_negative(name, value)


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A record a stage could not use, with the reason and the original payload.

    `raw` holds at most DEAD_LETTER_RAW_MAX_BYTES of the payload (UTF-8, invalid bytes
    replaced); `raw_bytes` and `raw_sha256` describe the whole payload. Build one with
    `dead_letter`, which bounds it. A stage's letter names the record's place (`topic`,
    `partition`, `offset`; None for a source's reject): letters are produced at least once (a
    stage that fails before committing replays and sends them again), so readers deduplicate
    by that place.
    """

    stage: str
    reason: str
    raw: str
    ts_ms: int
    raw_bytes: int = 0
    raw_sha256: str = ""
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    def __post_init__(self) -> None:
        if not self.stage or not self.reason:
            raise RecordError("stage/reason: must not be empty")
        if len(self.raw) > DEAD_LETTER_RAW_MAX_BYTES:
            raise RecordError(f"raw: longer than {DEAD_LETTER_RAW_MAX_BYTES}; use dead_letter()")


def dead_letter(
    stage: str,
    reason: str,
    raw: bytes | str,
    ts_ms: int,
    place: tuple[str, int, int | None] | None = None,
) -> DeadLetter:
    """A DeadLetter with a bounded prefix of `raw`, its full size and its SHA-256; `place` is
    the (topic, partition, offset) the record was read from, when a stage read it."""
    data = raw.encode("utf-8", errors="replace") if isinstance(raw, str) else bytes(raw)
    # at most one character per byte, so the prefix fits the bound
    text = data[:DEAD_LETTER_RAW_MAX_BYTES].decode("utf-8", errors="replace")
    return DeadLetter(
        stage=stage,
        reason=reason[:1000],
        raw=text,
        ts_ms=ts_ms,
        raw_bytes=len(data),
        raw_sha256=hashlib.sha256(data).hexdigest(),
        topic=None if place is None else place[0],
        partition=None if place is None else place[1],
        offset=None if place is None else place[2],
    )


R = TypeVar("R", bound=msgspec.Struct)

_encoder = msgspec.json.Encoder()


def encode(record: msgspec.Struct) -> bytes:
    """The JSON bytes of a record (the only serialisation used on topics)."""
    return _encoder.encode(record)


@cache
def _decoder(kind: type[R]) -> msgspec.json.Decoder[R]:
    return msgspec.json.Decoder(kind)


def decode(data: bytes | str, kind: type[R]) -> R:
    """Parse and validate one record; raise RecordError naming what is wrong.

    A TradeWire's pair pattern is checked here, once per distinct pair (see TradeWire)."""
    try:
        record: R = _decoder(kind).decode(data)
    except RecordError:
        raise
    except msgspec.ValidationError as exc:
        raise RecordError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise RecordError(f"malformed JSON: {exc}") from None
    if isinstance(record, TradeWire) and not (
        record.pair in _GOOD_PAIRS or _known_pair(record.pair)
    ):
        _pair(record.pair)  # raises, naming the pair
    return record


def to_dict(record: msgspec.Struct) -> dict[str, Any]:
    """Field name -> value, in declaration order."""
    return {name: getattr(record, name) for name in record.__struct_fields__}


def field_names(kind: type[msgspec.Struct]) -> tuple[str, ...]:
    """The record type's field names (its table's columns), in declaration order."""
    return kind.__struct_fields__
