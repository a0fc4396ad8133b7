"""The indicator side of bounded state: gaps filled with bounded flat rows, idle series dropped."""

from __future__ import annotations

import math

import msgspec

from cryptopred_core import tables, topics
from cryptopred_core.pipeline.stage import Emit, Inbound
from cryptopred_core.records import INDICATOR_COLUMNS, Candle, IndicatorRow, decode, encode
from cryptopred_ingest.indicators import IndicatorEngine
from cryptopred_ingest.stream.indicator_stage import IndicatorStage

START_MS = 1_700_000_040_000 - 1_700_000_040_000 % 60_000


def candle(pair: str, i: int, price: float) -> Candle:
    start = START_MS + i * 60_000
    return Candle(
        pair=pair,
        candle_seconds=60,
        window_start_ms=start,
        window_end_ms=start + 60_000,
        open=price,
        high=price * 1.001,
        low=price * 0.999,
        close=price * (1 + 0.0005 * math.sin(i)),
        volume=1.0 + i % 3,
        vwap=price,
        n_trades=3,
        final=True,
    )


def test_a_long_gap_is_filled_with_at_most_max_flat_candles_rows() -> None:
    engine = IndicatorEngine(max_flat_candles=100)
    engine.on_candle(candle("BTC/USD", 0, 10.0))
    rows = engine.on_candle(candle("BTC/USD", 30 * 1440, 11.0))  # 30 days later
    assert len(rows) == 101
    assert [r.window_start_ms for r in rows[:-1]] == [
        START_MS + (30 * 1440 - k) * 60_000 for k in range(100, 0, -1)
    ]


class History:
    """technical_indicators as a list the stage's rows are written to."""

    def __init__(self) -> None:
        self.rows: list[IndicatorRow] = []
        self.reads: list[tuple[str, int]] = []

    def read(self, pair: str, candle_seconds: int, limit: int) -> list[IndicatorRow]:
        self.reads.append((pair, candle_seconds))
        mine = [r for r in self.rows if (r.pair, r.candle_seconds) == (pair, candle_seconds)]
        return sorted(mine, key=lambda r: -r.window_start_ms)[:limit]


def _run(evict_s: int) -> tuple[list[IndicatorRow], History]:
    history = History()
    stage = IndicatorStage(
        "postgresql://unused", series_idle_evict_s=evict_s, read_history=history.read
    )
    got: list[IndicatorRow] = []
    schedule = [("BTC/USD", i) for i in range(300)] + [("ETH/USD", i) for i in range(120)]
    schedule += [("ETH/USD", i) for i in range(200, 300)]  # ETH quiet for 80 minutes
    schedule.sort(key=lambda s: (s[1], s[0]))
    for offset, (pair, i) in enumerate(schedule):
        now = START_MS + (i + 1) * 60_000 + 100
        out = Emit()
        c = candle(pair, i, 10.0 if pair == "BTC/USD" else 20.0)
        stage.handle(Inbound(topics.CANDLES, 0, offset, None, encode(c), now), now, out)
        stage.end_batch(now, out)
        history.rows += [r for r in out.rows.get(tables.TECHNICAL_INDICATORS, [])]  # type: ignore[misc]
        got += [
            decode(v, IndicatorRow) for t, _, v in out.records if t == topics.TECHNICAL_INDICATORS
        ]
    return got, history


def test_idle_series_are_dropped_and_rebuilt_from_their_rows_with_the_same_values() -> None:
    kept, _ = _run(10**6)
    dropped, history = _run(3_600)
    assert history.reads.count(("ETH/USD", 60)) == 2  # first seen, then after its quiet hour
    assert len(dropped) == len(kept)
    for a, b in zip(dropped, kept, strict=True):
        assert msgspec.structs.replace(a, **dict.fromkeys(INDICATOR_COLUMNS)) == (
            msgspec.structs.replace(b, **dict.fromkeys(INDICATOR_COLUMNS))
        )
        for col in INDICATOR_COLUMNS:
            x, y = getattr(a, col), getattr(b, col)
            assert (x is None) == (y is None), col
            assert x is None or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9), col
