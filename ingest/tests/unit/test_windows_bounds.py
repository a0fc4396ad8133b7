"""The candle builder against wrong timestamps and repeated trades: bounds and dedup."""

from __future__ import annotations

import msgspec

from cryptopred_core.records import Trade
from cryptopred_ingest.windows import CandleBuilder
from cryptopred_testsupport.candle_cases import (
    GRACE_MS,
    T0_MS,
    WIDTHS,
    finals,
    make_trades,
    run,
    shuffle_within_grace,
)

MINUTE_MS = 60_000
YEAR_MS = 365 * 86_400_000
WALL_MS = 1_790_000_000_000  # "now", years after the make_trades data


def _trade(ts_ms: int, trade_id: int | None, price: float = 1.0) -> Trade:
    return Trade(
        pair="BTC/USD",
        price=price,
        qty=1.0,
        side="buy",
        trade_id=trade_id,
        ts_ms=ts_ms,
        source="t",
    )


def test_trade_past_the_wall_clock_is_rejected_future_and_the_pair_goes_on() -> None:
    builder = CandleBuilder([60], grace_ms=GRACE_MS, max_future_ms=300_000)
    builder.observe_clock(WALL_MS)
    builder.add(_trade(WALL_MS - 2_000, 1))
    bad = _trade(WALL_MS + 301_000, 2)
    builder.add(bad)
    builder.add(_trade(WALL_MS - 1_000, 3))  # the pair is not poisoned: not late
    builder.add(_trade(WALL_MS + 200_000, 4))  # within the bound (a skewed exchange clock)
    out = builder.drain()
    assert [(r.trade, r.reason.split(":")[0]) for r in out.rejected] == [(bad, "future")]
    assert "301 s" in out.rejected[0].reason and "300 s" in out.rejected[0].reason
    assert out.rejected[0].candle_seconds == (60,)
    assert builder.n_future == 1 and builder.n_late == 0


def test_year_ahead_trade_in_a_2018_replay_is_rejected_ahead_and_the_replay_goes_on() -> None:
    may_2018_ms = 1_526_860_800_000
    trades = [
        msgspec.structs.replace(t, ts_ms=t.ts_ms - T0_MS + may_2018_ms)
        for t in make_trades(3000, seed=11)
    ]
    bad = msgspec.structs.replace(trades[1500], ts_ms=trades[1500].ts_ms + YEAR_MS)
    tape = [*trades[:1500], bad, *trades[1500:]]
    builder = CandleBuilder(WIDTHS, grace_ms=GRACE_MS, max_jump_ms=86_400_000)
    builder.observe_clock(WALL_MS)  # replays run with today's clock, far after the trades
    for i, t in enumerate(tape):
        builder.add(t, 0, i)
    builder.finish()
    out = builder.drain()
    assert [(r.trade, r.reason.split(":")[0]) for r in out.rejected] == [(bad, "ahead")]
    assert "86400 s" in out.rejected[0].reason
    assert out.rejected[0].candle_seconds == WIDTHS
    assert finals(out.candles) == finals(run(trades))


def test_live_pair_back_after_a_long_outage_is_not_rejected() -> None:
    builder = CandleBuilder([60], grace_ms=GRACE_MS, max_jump_ms=86_400_000)
    builder.observe_clock(WALL_MS)
    builder.add(_trade(WALL_MS - 3 * 86_400_000, 1))  # three days ago
    builder.add(_trade(WALL_MS - 500, 2))  # now: 3 days after the pair's event time
    assert builder.drain().rejected == []


def test_flat_gap_filling_keeps_only_the_latest_max_flat_candles_per_width() -> None:
    old = 1_262_304_000_000  # 2010-01-01
    builder = CandleBuilder([60, 3600], grace_ms=GRACE_MS, max_flat_candles=100)
    builder.observe_clock(WALL_MS)
    builder.add(_trade(old + 1_000, 1, 5.0))
    builder.add(_trade(WALL_MS - 1_000, 2, 6.0))  # a current one: within the jump of the clock
    builder.finish()
    out = builder.drain()
    assert out.rejected == []
    for width_s in (60, 3600):
        got = sorted(
            (c for c in out.candles if c.candle_seconds == width_s and c.final),
            key=lambda c: c.window_start_ms,
        )
        flats = [c for c in got if c.n_trades == 0]
        assert len(flats) == 100 and all(c.close == 5.0 for c in flats)
        width_ms = width_s * 1000
        last_start = (WALL_MS - 1_000) - (WALL_MS - 1_000) % width_ms
        # the flat candles kept are the ones right before the new trade
        assert [c.window_start_ms for c in got[1:]] == [
            last_start - k * width_ms for k in range(100, -1, -1)
        ]
        assert got[0].window_start_ms == old - old % width_ms and got[0].n_trades == 1


def _clean_and_tape(n: int = 2000) -> list[Trade]:
    """Trades over ~4 minutes, so every id is still kept when a repeat arrives."""
    trades = make_trades(n, ("BTC/USD", "ETH/USD"), seed=12)
    t0, span_ms = trades[0].ts_ms, trades[-1].ts_ms - trades[0].ts_ms
    return [
        msgspec.structs.replace(t, ts_ms=t0 + (t.ts_ms - t0) * 240_000 // span_ms) for t in trades
    ]


def _feed(tape: list[Trade], widths: tuple[int, ...] = (60, 300)) -> CandleBuilder:
    builder = CandleBuilder(widths, grace_ms=GRACE_MS)
    for i, t in enumerate(tape):
        builder.add(t, 0, i)
    builder.finish()
    return builder


def test_republished_trades_are_counted_once() -> None:
    trades = shuffle_within_grace(_clean_and_tape())
    want = finals(_feed(trades).drain().candles)
    last_5s = [t for t in trades[:1200] if t.ts_ms >= trades[1199].ts_ms - 5_000]
    page = trades[600:700]
    cases = {
        "restarted live source republishes its last 5 s": [
            *trades[:1200],
            *last_5s,
            *trades[1200:],
        ],
        "backfill page produced twice": [*trades[:700], *page, *trades[700:]],
        "replay restarted at line 1": [*trades[:900], *trades],
    }
    for name, tape in cases.items():
        builder = _feed(tape)
        out = builder.drain()
        assert out.rejected == [], name
        assert finals(out.candles) == want, name
        assert builder.n_duplicates == len(tape) - len(trades), name


def test_trades_without_id_are_never_deduplicated() -> None:
    t = _trade(1_700_000_001_000, None)
    builder = _feed([t, t], (60,))
    (candle,) = [c for c in builder.drain().candles if c.final]
    assert candle.n_trades == 2 and builder.n_duplicates == 0


def test_after_restore_replayed_trades_count_again_but_new_repeats_do_not() -> None:
    trades = shuffle_within_grace(_clean_and_tape())
    want = finals(_feed(trades).drain().candles)
    first = CandleBuilder((60, 300), grace_ms=GRACE_MS)
    for i, t in enumerate(trades[:1500]):
        first.add(t, 0, i)
    before = first.drain().candles
    cp = first.checkpoint()[0]
    second = CandleBuilder((60, 300), grace_ms=GRACE_MS)
    second.restore(cp.state, 0)
    tape = [*trades[cp.offset : 1500], *trades[1400:1500], *trades[1500:]]  # replay, repeats
    for off, t in enumerate(tape, start=cp.offset):
        second.add(t, 0, off)
    second.finish()
    out = second.drain()
    assert out.rejected == [] and second.n_duplicates == 100
    assert {**finals(before), **finals(out.candles)} == want


def test_checkpoint_stores_closed_windows_sequential_ids_as_runs() -> None:
    start = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    builder = CandleBuilder([60], grace_ms=GRACE_MS)
    for i in range(1000):
        builder.add(_trade(start + 10 * i, 5_000 + i), 0, i)
    builder.add(_trade(start + 70_000, 6_000), 0, 1000)  # closes the first minute
    state = builder.checkpoint()[0].state
    assert "[5000,5999]" in state and "6000" not in state and len(state) < 400
    # a repeat of a closed minute's trade is a duplicate, not late, after a restart too
    second = CandleBuilder([60], grace_ms=GRACE_MS)
    second.restore(state, 0)
    second.add(_trade(start + 70_000, 6_000), 0, 1000)  # replayed from the committed offset
    second.add(_trade(start + 500, 5_050), 0, 1001)
    assert second.drain().rejected == [] and second.n_duplicates == 1


def test_a_clock_observed_after_the_first_trades_still_bounds_the_pair() -> None:
    builder = CandleBuilder([60], grace_ms=GRACE_MS)
    builder.add(_trade(WALL_MS - 5_000, 1))
    builder.add(_trade(WALL_MS - 4_000, 2))  # no wall clock yet: only the jump bounds these
    builder.observe_clock(WALL_MS)
    builder.add(_trade(WALL_MS + 3_600_000, 3))  # within a day of the pair, an hour ahead
    builder.tick(WALL_MS + 7_200_000)
    builder.add(_trade(WALL_MS + 3_600_000, 4))  # two hours later that hour is in the past
    out = builder.drain()
    assert [(r.trade.trade_id, r.reason.split(":")[0]) for r in out.rejected] == [(3, "future")]
