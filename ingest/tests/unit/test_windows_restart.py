"""The candle builder across a restart: checkpoints, replayed trades, safe offsets."""

from __future__ import annotations

import pytest

from cryptopred_core.records import Trade
from cryptopred_ingest.windows import CandleBuilder
from cryptopred_testsupport.candle_cases import (
    GRACE_MS,
    WIDTHS,
    finals,
    make_trades,
    run,
    shuffle_within_grace,
)


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
