"""Streaming technical indicators per (pair, candle_seconds) on TA-Lib 0.8 stream handles (pure).

Final candles `update()` the handles; an open candle is evaluated with `peek()`, which leaves
state alone (windows still open before it are applied to a `copy()` first). Until enough finals
exist to `open_and_fill` a handle, its columns are None, exactly like the leading NaNs of the
batch function over the same series; every value equals batch TA-Lib over the candles since the
series started (bit-exact in practice, checked to 1e-9).

MACD convention: `macd_7`, `macdsignal_7`, `macdhist_7` are TA-Lib MACD with fastperiod=7,
slowperiod=21, signalperiod=7 (the classic 12/26/9 shortened to the 7-bar family).
BBANDS: timeperiod=20, nbdevup=nbdevdn=2, SMA. ATR, ADX, MFI: 14; OBV starts at the first
candle's volume, as in TA-Lib.

Restart: handles cannot be pickled, so `restore(candles, last_row)` rebuilds them with
`open_and_fill` from the last final candles (read from the DB). EMA/RSI/ATR/ADX/MACD depend on all
history with a weight that decays geometrically: with `RESTORE_CANDLES` candles they match the
uninterrupted engine to 1e-9. OBV is a running sum, so pass the stored row of the last candle and
the engine continues from its `obv`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import talib
import talib.abstract
import talib.stream as ts

from cryptopred_core.records import INDICATOR_COLUMNS, Candle, IndicatorRow

RESTORE_CANDLES = 2_000
MAX_FLAT_CANDLES = 10_080  # a gap is filled with at most this many flat rows (the latest)

# talib's stubs do not declare it; it is raised when open_and_fill gets too little history.
InsufficientHistory: type[Exception] = talib.InsufficientHistory  # type: ignore[attr-defined]

_INPUTS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class Spec:
    """One TA-Lib stream function: its inputs, parameters and the columns of its outputs."""

    function: str
    inputs: tuple[str, ...]
    params: tuple[tuple[str, int | float], ...]
    columns: tuple[str, ...]

    def open(self, arrays: dict[str, np.ndarray]) -> tuple[Any, tuple[float, ...]]:
        """`open_and_fill` over the arrays; raise talib.InsufficientHistory if too short."""
        cls = getattr(ts, self.function)
        bars = len(arrays["close"])
        if bars < self.min_bars():
            # Checked here rather than left to TA-Lib: in a long-running process ta-lib 0.8.2
            # was seen answering TA_BAD_PARAM instead of InsufficientHistory for short history.
            raise InsufficientHistory(f"{self.function}: {bars} bars, {self.min_bars()} needed")
        handle, full = cls.open_and_fill(*(arrays[k] for k in self.inputs), **dict(self.params))
        series = full if isinstance(full, tuple) else (full,)
        return handle, tuple(float(s[-1]) for s in series)

    def min_bars(self) -> int:
        """Bars of history open_and_fill needs: the function's lookback plus one."""
        return _min_bars(self.function, self.params)


@functools.cache
def _min_bars(function: str, params: tuple[tuple[str, int | float], ...]) -> int:
    function_ = talib.abstract.Function(function, **dict(params))  # type: ignore[attr-defined]
    return int(function_.lookback) + 1


def _specs() -> tuple[Spec, ...]:
    specs: list[Spec] = []
    for period in (7, 14, 21, 60):
        for fn in ("SMA", "EMA", "RSI"):
            specs.append(
                Spec(fn, ("close",), (("timeperiod", period),), (f"{fn.lower()}_{period}",))
            )
    specs.append(
        Spec(
            "MACD",
            ("close",),
            (("fastperiod", 7), ("slowperiod", 21), ("signalperiod", 7)),
            ("macd_7", "macdsignal_7", "macdhist_7"),
        )
    )
    specs.append(Spec("OBV", ("close", "volume"), (), ("obv",)))
    specs.append(Spec("ATR", ("high", "low", "close"), (("timeperiod", 14),), ("atr_14",)))
    specs.append(Spec("ADX", ("high", "low", "close"), (("timeperiod", 14),), ("adx_14",)))
    specs.append(
        Spec(
            "BBANDS",
            ("close",),
            (("timeperiod", 20), ("nbdevup", 2.0), ("nbdevdn", 2.0), ("matype", 0)),
            ("bbands_upper_20", "bbands_middle_20", "bbands_lower_20"),
        )
    )
    specs.append(
        Spec("MFI", ("high", "low", "close", "volume"), (("timeperiod", 14),), ("mfi_14",))
    )
    return tuple(specs)


SPECS = _specs()
assert sorted(c for s in SPECS for c in s.columns) == sorted(INDICATOR_COLUMNS)


COLUMNS = tuple(c for s in SPECS for c in s.columns)  # the order in which SPECS give values
_OBV_AT = COLUMNS.index("obv")
# per spec: where its inputs sit in a candle's (open, high, low, close, volume) tuple
_PICKS = tuple(tuple(_INPUTS.index(k) for k in s.inputs) for s in SPECS)
_NAN = float("nan")


def _inputs(c: Candle) -> tuple[float, ...]:
    return (float(c.open), float(c.high), float(c.low), float(c.close), float(c.volume))


def _call(method: Any, pick: tuple[int, ...], x: tuple[float, ...], raw: list[float]) -> None:
    """Call a handle's update/peek with the inputs `pick` selects; append its outputs to `raw`."""
    result = method(x[pick[0]]) if len(pick) == 1 else method(*[x[j] for j in pick])
    if type(result) is tuple:
        raw.extend(result)
    else:
        raw.append(result)


def _flat(after: Candle, start_ms: int, final: bool) -> Candle:
    return Candle.flat(after.pair, after.candle_seconds, start_ms, after.close, final)


class _Series:
    """Handles and state of one (pair, candle_seconds).

    Values travel as lists in `COLUMNS` order (NaN while a handle cannot give one, None after
    cleaning); once every handle is open, `updates` holds their bound `update` methods, so a
    final candle costs one call per spec and no per-spec lookups.
    """

    def __init__(self) -> None:
        self.handles: list[Any | None] = [None] * len(SPECS)
        self.updates: list[tuple[Any, tuple[int, ...]]] | None = None  # set once all are open
        self.history: list[Candle] = []  # finals kept only while some handle is not open yet
        self.last: Candle | None = None  # last final candle
        self.pending: dict[int, Candle] = {}  # latest open candle per window after `last`
        self.obv_offset = 0.0

    def arrays(self, extra: Sequence[Candle] = ()) -> dict[str, np.ndarray]:
        rows = [*self.history, *extra]
        return {k: np.array([getattr(c, k) for c in rows], dtype=np.float64) for k in _INPUTS}

    def opened(self) -> None:
        """Switch to the fast path once every handle is open (history is no longer needed)."""
        handles = [h for h in self.handles if h is not None]
        if len(handles) == len(SPECS):
            self.history.clear()
            self.updates = [(h.update, pick) for h, pick in zip(handles, _PICKS, strict=True)]

    def apply_final(self, candle: Candle) -> list[float | None]:
        """Commit one final candle; return its indicator values in `COLUMNS` order."""
        x = _inputs(candle)
        raw: list[float] = []
        self.last = candle
        if self.updates is not None:  # the hot path, _call inlined
            for update, pick in self.updates:
                result = update(x[pick[0]]) if len(pick) == 1 else update(*[x[j] for j in pick])
                if type(result) is tuple:
                    raw.extend(result)
                else:
                    raw.append(result)
            return self._clean(raw)
        self.history.append(candle)
        arrays: dict[str, np.ndarray] | None = None
        for i, spec in enumerate(SPECS):
            handle = self.handles[i]
            if handle is not None:
                _call(handle.update, _PICKS[i], x, raw)
                continue
            arrays = arrays if arrays is not None else self.arrays()
            try:
                self.handles[i], outs = spec.open(arrays)
            except InsufficientHistory:
                outs = (_NAN,) * len(spec.columns)
            raw.extend(outs)
        self.opened()
        return self._clean(raw)

    def evaluate_open(self, candle: Candle, before: Sequence[Candle]) -> list[float | None]:
        """Indicator values if `candle` closed now after the open windows `before` it."""
        x = _inputs(candle)
        xs_before = [_inputs(c) for c in before]
        raw: list[float] = []
        arrays: dict[str, np.ndarray] | None = None
        for i, spec in enumerate(SPECS):
            handle = self.handles[i]
            if handle is not None:
                if xs_before:
                    handle = handle.copy()
                    ignored: list[float] = []
                    for xb in xs_before:
                        _call(handle.update, _PICKS[i], xb, ignored)
                _call(handle.peek, _PICKS[i], x, raw)
                continue
            arrays = arrays if arrays is not None else self.arrays([*before, candle])
            try:
                outs = spec.open(arrays)[1]
            except InsufficientHistory:
                outs = (_NAN,) * len(spec.columns)
            raw.extend(outs)
        return self._clean(raw)

    def _clean(self, raw: list[float]) -> list[float | None]:
        values: list[float | None] = [v if math.isfinite(v) else None for v in raw]
        obv = values[_OBV_AT]
        if obv is not None:
            values[_OBV_AT] = obv + self.obv_offset
        return values


def _row(candle: Candle, values: list[float | None]) -> IndicatorRow:
    return IndicatorRow(
        pair=candle.pair,
        candle_seconds=candle.candle_seconds,
        window_start_ms=candle.window_start_ms,
        window_end_ms=candle.window_end_ms,
        open=candle.open,
        high=candle.high,
        low=candle.low,
        close=candle.close,
        volume=candle.volume,
        vwap=candle.vwap,
        n_trades=candle.n_trades,
        final=candle.final,
        **dict(zip(COLUMNS, values, strict=True)),
    )


class IndicatorEngine:
    """Turns candles (open and final, any pair and width) into `IndicatorRow`s."""

    def __init__(self, max_flat_candles: int = MAX_FLAT_CANDLES) -> None:
        self._series: dict[tuple[str, int], _Series] = {}
        self.max_flat_candles = max_flat_candles

    def _gap(self, last_end_ms: int, start_ms: int, width_ms: int) -> range:
        """Starts of the missing windows to fill flat: at most the latest max_flat_candles."""
        skipped = max(0, (start_ms - last_end_ms) // width_ms - self.max_flat_candles)
        return range(last_end_ms + skipped * width_ms, start_ms, width_ms)

    def drop(self, pair: str, candle_seconds: int) -> None:
        """Forget one series (it is rebuilt with `restore` when needed again)."""
        self._series.pop((pair, candle_seconds), None)

    def _get(self, candle: Candle) -> _Series:
        key = (candle.pair, candle.candle_seconds)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        return series

    def on_candle(self, candle: Candle) -> list[IndicatorRow]:
        """Rows for one candle: [] for a stale or repeated candle; flat rows fill any gap."""
        series = self._get(candle)
        last = series.last
        if last is not None and candle.window_start_ms <= last.window_start_ms:
            return []  # already final (a replay re-emits identical finals)
        width_ms = candle.candle_seconds * 1000
        if candle.final:
            rows: list[IndicatorRow] = []
            if last is not None:
                for start in self._gap(last.window_end_ms, candle.window_start_ms, width_ms):
                    gap = _flat(series.last or last, start, True)  # missing: flat, as upstream
                    rows.append(_row(gap, series.apply_final(gap)))
            rows.append(_row(candle, series.apply_final(candle)))
            if series.pending:
                start = candle.window_start_ms
                series.pending = {s: c for s, c in series.pending.items() if s > start}
            return rows
        series.pending[candle.window_start_ms] = candle
        before: list[Candle] = []
        if last is not None:
            prev = last
            for start in self._gap(last.window_end_ms, candle.window_start_ms, width_ms):
                prev = series.pending.get(start) or _flat(prev, start, False)
                before.append(prev)
        return [_row(candle, series.evaluate_open(candle, before))]

    def restore(self, candles: Sequence[Candle], last_row: IndicatorRow | None = None) -> None:
        """Rebuild one (pair, width) from its last final candles, oldest first (no rows out).

        `last_row` is the stored row of the last candle; its `obv` carries OBV on.
        """
        if not candles:
            return
        series = self._series[(candles[0].pair, candles[0].candle_seconds)] = _Series()
        series.history = list(candles)
        arrays = series.arrays()
        for i, spec in enumerate(SPECS):
            try:
                series.handles[i], outs = spec.open(arrays)
            except InsufficientHistory:
                continue
            if (
                spec.function == "OBV"
                and last_row is not None
                and last_row.obv is not None
                and last_row.window_start_ms == candles[-1].window_start_ms
            ):
                series.obv_offset = last_row.obv - outs[0]
        series.opened()
        series.last = candles[-1]
