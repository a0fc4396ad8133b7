"""The candle builder against a pandas reference: ordering, lateness, idle pairs, ticks."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pandas as pd
import pytest

from cryptopred_core.records import Candle, Trade
from cryptopred_ingest.windows import CandleBuilder
from cryptopred_testsupport.candle_cases import (
    GRACE_MS,
    WIDTHS,
    Key,
    finals,
    make_trades,
    reference,
    run,
    shuffle_within_grace,
)


def test_finals_equal_pandas_reference_for_three_widths() -> None:
    trades = make_trades(6000)
    got = finals(run(trades))
    want: dict[Key, Candle] = {}
    for w in WIDTHS:
        want.update(reference(trades, w))
    assert len(want) > 100
    assert any(c.n_trades == 0 for c in want.values()), "the data should contain flat candles"
    assert got == want


def test_shuffled_within_grace_gives_identical_finals() -> None:
    trades = make_trades(5000, seed=3)
    shuffled = shuffle_within_grace(trades)
    assert shuffled != trades
    assert finals(run(shuffled)) == finals(run(trades))


def test_candles_emitted_once_final_each_and_in_window_order() -> None:
    candles = [c for c in run(make_trades(3000, seed=4)) if c.final]
    keys = [(c.pair, c.candle_seconds, c.window_start_ms) for c in candles]
    assert len(keys) == len(set(keys))
    for pair in ("BTC/USD", "ETH/USD"):
        for w in WIDTHS:
            starts = [c.window_start_ms for c in candles if (c.pair, c.candle_seconds) == (pair, w)]
            assert starts == list(range(starts[0], starts[-1] + 1, w * 1000))


def test_trade_later_than_grace_is_rejected_late_and_counted() -> None:
    builder = CandleBuilder([60, 300], grace_ms=GRACE_MS)
    base = 1_700_000_100_000 - 1_700_000_100_000 % 300_000

    def mk(ts: int, i: int) -> Trade:
        return Trade(
            pair="BTC/USD", price=10.0 + i, qty=1.0, side="buy", trade_id=i, ts_ms=ts, source="t"
        )

    builder.add(mk(base + 10_000, 0))
    builder.add(mk(base + 70_000, 1))  # watermark base + 65 s closes the first minute
    builder.add(mk(base + 62_000, 2))  # 8 s behind but its minute is still open: accepted
    late = mk(base + 59_000, 3)
    builder.add(late)
    out = builder.drain()
    assert [(r.trade, r.reason, r.candle_seconds) for r in out.rejected] == [(late, "late", (60,))]
    assert builder.n_late == 1
    first = finals(out.candles)[("BTC/USD", 60, base)]
    assert first.n_trades == 1 and first.close == 10.0
    builder.finish()
    five = finals(builder.drain().candles)[("BTC/USD", 300, base)]
    assert five.n_trades == 4  # the 5-minute window was still open for the late trade


def test_batches_partitions_and_replicas_give_identical_finals() -> None:
    pairs = ("BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD")
    trades = shuffle_within_grace(make_trades(6000, pairs, seed=5))
    want = finals(run(trades))
    rnd = random.Random(9)
    # Partition by pair (the topic key), two replicas, batches of random size, ticks between.
    parts = {p: i % 3 for i, p in enumerate(pairs)}
    per_part = {k: [t for t in trades if parts[t.pair] == k] for k in range(3)}
    replicas = [CandleBuilder(WIDTHS, grace_ms=GRACE_MS) for _ in range(2)]
    got: list[Candle] = []
    cursors = dict.fromkeys(per_part, 0)
    while any(cursors[k] < len(per_part[k]) for k in per_part):
        k = rnd.choice([k for k in per_part if cursors[k] < len(per_part[k])])
        n = rnd.randint(1, 300)
        builder = replicas[k % 2]
        for t in per_part[k][cursors[k] : cursors[k] + n]:
            builder.add(t, k, cursors[k])
            cursors[k] += 1
        got.extend(builder.drain().candles)
    for builder in replicas:
        builder.finish()
        got.extend(builder.drain().candles)
    assert finals(got) == want


def test_idle_pair_closes_within_grace_plus_one_second_of_wall_time() -> None:
    builder = CandleBuilder([60], grace_ms=GRACE_MS)
    start = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    ts = start + 30_000
    builder.tick(ts + 200)  # live: wall clock slightly after event time
    builder.add(
        Trade(pair="ETH/USD", price=5.0, qty=2.0, side="buy", trade_id=1, ts_ms=ts, source="t")
    )
    now = ts + 200
    closed_at = None
    while closed_at is None and now < start + 60_000 + 30_000:
        now += 250
        builder.tick(now)
        if any(c.final for c in builder.drain().candles):
            closed_at = now
    assert closed_at is not None
    assert start + 60_000 + GRACE_MS <= closed_at <= start + 60_000 + GRACE_MS + 1_000
    # Still quiet: the next minutes close as flat candles at the last close.
    builder.tick(start + 3 * 60_000 + GRACE_MS + 500)
    flats = [c for c in builder.drain().candles if c.final]
    assert [c.window_start_ms for c in flats] == [start + 60_000, start + 120_000]
    assert all(
        (c.open, c.close, c.volume, c.n_trades, c.vwap) == (5.0, 5.0, 0.0, 0, 5.0) for c in flats
    )


def test_flat_candles_fill_gaps_between_trades() -> None:
    start = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    trades = [
        Trade(pair="SOL/USD", price=p, qty=1.0, side="sell", trade_id=i, ts_ms=ts, source="t")
        for i, (p, ts) in enumerate(
            [(3.0, start + 1_000), (4.0, start + 2_000), (7.0, start + 241_000)]
        )
    ]
    got = sorted(finals(run(trades, [60])).values(), key=lambda c: c.window_start_ms)
    assert [
        (c.window_start_ms - start, c.open, c.high, c.low, c.close, c.n_trades) for c in got
    ] == [
        (0, 3.0, 4.0, 3.0, 4.0, 2),
        (60_000, 4.0, 4.0, 4.0, 4.0, 0),
        (120_000, 4.0, 4.0, 4.0, 4.0, 0),
        (180_000, 4.0, 4.0, 4.0, 4.0, 0),
        (240_000, 7.0, 7.0, 7.0, 7.0, 1),
    ]
    assert got[1].vwap == 4.0 and got[1].volume == 0.0


def test_open_candles_come_from_tick_rate_limited_by_wall_time_and_not_final() -> None:
    builder = CandleBuilder([60], grace_ms=GRACE_MS, open_emit_interval_ms=1_000)
    start = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    wall = 1_800_000_000_000
    seen = []
    for i in range(26):  # one trade per 100 ms (event and wall time) for 2.5 s
        builder.observe_clock(wall + 100 * i)
        builder.add(
            Trade(
                pair="XRP/USD",
                price=1.0 + i,
                qty=1.0,
                side="buy",
                trade_id=i,
                ts_ms=start + 100 * i,
                source="t",
            )
        )
        assert builder.drain().candles == []  # adding never emits an open candle
        builder.tick(wall + 100 * i)
        seen += builder.drain().candles
    assert [c.n_trades for c in seen] == [1, 11, 21]
    assert all(not c.final and c.window_start_ms == start for c in seen)
    assert seen[-1].close == 21.0 and seen[-1].high == 21.0 and seen[-1].open == 1.0


def test_kraken_csv_candles_equal_pandas(shared_dir: Path) -> None:
    folder = shared_dir / "data/real/kraken_xbtusd_ethusd_trades_2018-05"
    path = folder / "XBTUSD_trades_2018-05-21_to_2018-05-22.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with gzip.open(path, "rt") as f:
        df = pd.read_csv(f)
    df["ts_ms"] = (df["time"] * 1000).round().astype("int64")
    df = df.sort_values("ts_ms", kind="stable").reset_index(drop=True)
    trades = [
        Trade(
            pair="BTC/USD",
            price=float(p),
            qty=float(q),
            side="buy" if s == "b" else "sell",
            trade_id=i,
            ts_ms=int(ts),
            source="kraken-csv",
        )
        for i, (p, q, s, ts) in enumerate(
            zip(df["price"], df["volume"], df["buy_or_sell"], df["ts_ms"], strict=True)
        )
    ]
    assert len(trades) > 10_000
    got = finals(run(trades, [60, 3600]))
    want = {**reference(trades, 60), **reference(trades, 3600)}
    assert got == want


def test_backfill_with_wall_clock_ticks_closes_nothing_early() -> None:
    """Replaying old trades while ticking with today's clock: the pair is busy, not idle."""
    trades = shuffle_within_grace(make_trades(3000, seed=8))
    builder = CandleBuilder(WIDTHS, grace_ms=GRACE_MS)
    now = 1_790_000_000_000  # years after the trades
    got: list[Candle] = []
    for i in range(0, len(trades), 100):
        now += 7
        builder.tick(now)
        for j, t in enumerate(trades[i : i + 100], start=i):
            builder.add(t, 0, j)
        out = builder.drain()
        assert out.rejected == []
        got.extend(out.candles)
    builder.finish()
    got.extend(builder.drain().candles)
    assert finals(got) == finals(run(trades))


def test_tick_flushes_a_rate_limited_open_update_of_a_quiet_pair() -> None:
    start = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    builder = CandleBuilder([60], grace_ms=GRACE_MS, open_emit_interval_ms=1_000)
    builder.observe_clock(start)
    for i in range(3):
        trade = Trade(
            pair="XRP/USD",
            price=2.0,
            qty=1.0,
            side="buy",
            trade_id=i,
            ts_ms=start + 100 * i,
            source="t",
        )
        builder.add(trade)
        if i == 0:
            builder.tick(start)
            assert [c.n_trades for c in builder.drain().candles] == [1]
    builder.tick(start + 700)  # wall time: still rate-limited
    assert builder.drain().candles == []
    builder.tick(start + 1_300)
    assert [(c.n_trades, c.final) for c in builder.drain().candles] == [(3, False)]
    builder.tick(start + 2_500)
    assert builder.drain().candles == []  # nothing changed since
