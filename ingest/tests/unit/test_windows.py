"""The candle builder against a pandas reference; ordering, lateness, idle and restart rules."""

from __future__ import annotations

import gzip
import math
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptopred.records import Candle, Trade
from cryptopred_ingest.windows import CandleBuilder

T0_MS = 1_700_000_040_000  # not aligned to an hour, so the first windows are partial
GRACE_MS = 5_000
WIDTHS = (60, 300, 3600)
Key = tuple[str, int, int]


def make_trades(
    n: int, pairs: Sequence[str] = ("BTC/USD", "ETH/USD"), seed: int = 1
) -> list[Trade]:
    """Time-sorted trades with gaps of several minutes and many shared timestamps."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(400, n)
    gaps[rng.random(n) < 0.003] = 400_000  # quiet spells -> flat candles
    gaps[rng.random(n) < 0.2] = 0  # multi-fill sweeps share a timestamp
    ts = T0_MS + np.cumsum(gaps).astype(np.int64)
    prices = 50.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    qtys = rng.uniform(0.001, 3.0, n)
    pair_idx = rng.integers(0, len(pairs), n)
    return [
        Trade(
            pair=pairs[p],
            price=round(float(prices[i]), 4),
            qty=float(qtys[i]),
            side="buy" if i % 3 else "sell",
            trade_id=i,
            ts_ms=int(ts[i]),
            source="test",
        )
        for i, p in enumerate(pair_idx.tolist())
    ]


def shuffle_within_grace(trades: list[Trade], seed: int = 2) -> list[Trade]:
    """Arrival order by ts + U[0, grace): every trade arrives before its window can close."""
    rnd = random.Random(seed)
    keyed = [(t.ts_ms + rnd.randrange(GRACE_MS), i, t) for i, t in enumerate(trades)]
    return [t for _, _, t in sorted(keyed)]


def reference(trades: Iterable[Trade], candle_seconds: int) -> dict[Key, Candle]:
    """Final candles by pandas: event-time resample, label/closed left, flat-filled gaps."""
    df = pd.DataFrame(
        [(t.pair, t.ts_ms, t.trade_id, t.price, t.qty) for t in trades],
        columns=["pair", "ts_ms", "trade_id", "price", "qty"],
    )
    df["pv"] = df["price"] * df["qty"]
    out: dict[Key, Candle] = {}
    for pair, group in df.groupby("pair"):
        g = group.sort_values(["ts_ms", "trade_id"], kind="stable")
        g.index = pd.to_datetime(g["ts_ms"], unit="ms")
        bars = g.resample(f"{candle_seconds}s", label="left", closed="left", origin="epoch").agg(
            open=("price", "first"),
            high=("price", "max"),
            low=("price", "min"),
            close=("price", "last"),
            volume=("qty", math.fsum),
            pv=("pv", math.fsum),
            n=("price", "size"),
        )
        prev_close = bars["close"].ffill()
        for start, row in bars.iterrows():
            start_ms = int(pd.Timestamp(start).value // 1_000_000)
            empty = row["n"] == 0
            p = float(prev_close[start])
            out[(str(pair), candle_seconds, start_ms)] = Candle(
                pair=str(pair),
                candle_seconds=candle_seconds,
                window_start_ms=start_ms,
                window_end_ms=start_ms + candle_seconds * 1000,
                open=p if empty else float(row["open"]),
                high=p if empty else float(row["high"]),
                low=p if empty else float(row["low"]),
                close=p,
                volume=0.0 if empty else float(row["volume"]),
                vwap=p if empty else float(row["pv"]) / float(row["volume"]),
                n_trades=int(row["n"]),
                final=True,
            )
    return out


def finals(candles: Iterable[Candle]) -> dict[Key, Candle]:
    """Final candles by key; fails on two different finals for one window."""
    out: dict[Key, Candle] = {}
    for c in candles:
        if c.final:
            key = (c.pair, c.candle_seconds, c.window_start_ms)
            assert key not in out or out[key] == c, f"two different finals for {key}"
            out[key] = c
    return out


def run(
    trades: Iterable[Trade], widths: Sequence[int] = WIDTHS, finish: bool = True
) -> list[Candle]:
    builder = CandleBuilder(widths, grace_ms=GRACE_MS)
    for i, t in enumerate(trades):
        builder.add(t, 0, i)
    if finish:
        builder.finish()
    out = builder.drain()
    assert out.rejected == []
    return out.candles


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


@pytest.mark.parametrize("cut", [1, 777, 2500, 4999])
def test_restart_from_checkpoint_gives_identical_finals(cut: int) -> None:
    pairs = ("BTC/USD", "ETH/USD", "SOL/USD")
    trades = shuffle_within_grace(make_trades(5000, pairs, seed=6))
    parts = {"BTC/USD": 0, "ETH/USD": 1, "SOL/USD": 1}
    log = {
        k: [t for t in trades if parts[t.pair] == k] for k in (0, 1)
    }  # the topic: offset = index
    order = [(parts[t.pair], t) for t in trades]
    offsets = {0: 0, 1: 0}
    positions = []
    for k, _ in order:
        positions.append((k, offsets[k]))
        offsets[k] += 1
    want = finals(run(trades))

    first = CandleBuilder(WIDTHS, grace_ms=GRACE_MS)
    for (k, off), (_, t) in zip(positions[:cut], order[:cut], strict=True):
        first.add(t, k, off)
    before = first.drain().candles
    checkpoint = first.checkpoint()  # the actor commits these offsets with this state, then dies

    second = CandleBuilder(WIDTHS, grace_ms=GRACE_MS)
    for k, cp in checkpoint.items():
        second.restore(cp.state, k)
    resume = {k: checkpoint[k].offset if k in checkpoint else 0 for k in (0, 1)}
    assert all(resume[k] <= sum(1 for p, _ in positions[:cut] if p == k) for k in resume)
    # Replay each partition from its committed offset, interleaved differently than before.
    for k in (0, 1):
        for off in range(resume[k], len(log[k])):
            second.add(log[k][off], k, off)
    second.finish()
    out = second.drain()
    assert out.rejected == []
    got_before, got_after = finals(before), finals(out.candles)
    for key in got_before.keys() & got_after.keys():
        assert got_before[key] == got_after[key]
    assert {**got_before, **got_after} == want


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


def test_restart_keeps_pending_flat_windows_and_skips_replayed_trades() -> None:
    start = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    spec = [
        (2.0, start + 1_000),
        (3.0, start + 59_000),
        (5.0, start + 181_000),
        (6.0, start + 182_000),
    ]
    trades = [
        Trade(pair="BTC/USD", price=p, qty=1.0, side="buy", trade_id=i, ts_ms=ts, source="t")
        for i, (p, ts) in enumerate(spec)
    ]
    want = finals(run(trades, [60]))
    first = CandleBuilder([60], grace_ms=GRACE_MS)
    for off, t in enumerate(trades[:3]):
        first.add(t, 0, off)
    before = finals(first.drain().candles)  # minutes 0 and 1 are final; minute 2 not yet
    assert sorted(k[2] - start for k in before) == [0, 60_000]
    cp = first.checkpoint()[0]
    assert cp.offset == 2  # the first trade of the oldest open window
    second = CandleBuilder([60], grace_ms=GRACE_MS)
    second.restore(cp.state, 0)
    second.add(trades[0], 0, 0)  # replayed from before the commit: skipped, not late
    for off in range(cp.offset, len(trades)):
        second.add(trades[off], 0, off)
    second.finish()
    out = second.drain()
    assert out.rejected == [] and second.n_replayed == 1
    after = finals(out.candles)
    assert sorted(k[2] - start for k in after) == [120_000, 180_000]
    assert after[("BTC/USD", 60, start + 120_000)].close == 3.0  # flat at the restored close
    assert {**before, **after} == want


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


def test_safe_offsets_and_release() -> None:
    start = 1_700_000_100_000 - 1_700_000_100_000 % 300_000
    builder = CandleBuilder([60, 300], grace_ms=GRACE_MS)
    spec = [("BTC/USD", 0, 10, start + 1_000), ("ETH/USD", 1, 20, start + 2_000)]
    spec += [("BTC/USD", 0, 11, start + 70_000), ("ETH/USD", 1, 21, start + 3_000)]
    for pair, partition, offset, ts in spec:
        trade = Trade(
            pair=pair, price=1.0, qty=1.0, side="buy", trade_id=offset, ts_ms=ts, source="t"
        )
        builder.add(trade, partition, offset)
    # BTC's first minute closed but its 5-minute window (opened at offset 10) is still open.
    assert builder.safe_offsets() == {0: 10, 1: 20}
    builder.finish()
    assert builder.safe_offsets() == {0: 12, 1: 22}
    builder.release(1)
    assert builder.safe_offsets() == {0: 12}
    assert "ETH/USD" not in builder.checkpoint()[0].state


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
