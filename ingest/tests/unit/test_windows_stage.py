"""The candle stage with a fake DB: per-pair checkpoints, eviction, source-watermark holds."""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec

from cryptopred_core import tables, topics
from cryptopred_core.db.rows import SourceWatermark, StreamCheckpoint, StreamPairState
from cryptopred_core.pipeline.stage import Emit, Inbound
from cryptopred_core.records import Candle, Trade, decode, encode
from cryptopred_ingest.stream.candles import CandleStage
from cryptopred_testsupport.candle_cases import GRACE_MS, finals, make_trades, run

Key = tuple[str, int, int]


class FakeState:
    """The stage's DB tables as dicts; `write` applies a cycle's rows like the runner does."""

    def __init__(self) -> None:
        self.checkpoints: dict[int, StreamCheckpoint] = {}
        self.pairs: dict[str, StreamPairState] = {}
        self.watermarks: list[SourceWatermark] = []
        self.pair_loads: list[str] = []

    def load_checkpoints(self, partitions: list[int]) -> dict[int, StreamCheckpoint]:
        return {p: cp for p, cp in self.checkpoints.items() if p in partitions}

    def load_pair_states(self, partitions: list[int]) -> list[StreamPairState]:
        return [r for r in self.pairs.values() if r.partition in partitions]

    def load_pair_state(self, pair: str) -> StreamPairState | None:
        self.pair_loads.append(pair)
        return self.pairs.get(pair)

    def source_watermarks(self) -> Sequence[SourceWatermark]:
        return list(self.watermarks)

    def write(self, out: Emit) -> None:
        for row in out.rows.get(tables.STREAM_CHECKPOINTS, []):
            assert isinstance(row, StreamCheckpoint)
            self.checkpoints[row.partition] = row
        for row in out.rows.get(tables.STREAM_PAIR_STATES, []):
            assert isinstance(row, StreamPairState)
            self.pairs[row.pair] = row


def stage_of(state: FakeState, widths: Sequence[int] = (60,), **kwargs: int) -> CandleStage:
    return CandleStage(
        "postgresql://unused", "g", list(widths), GRACE_MS, 250, **kwargs, state=state
    )  # type: ignore[arg-type]


def message(trade: Trade, offset: int) -> Inbound:
    return Inbound(topics.TRADES, 0, offset, trade.pair.encode(), encode(trade), trade.ts_ms)


def candles_of(out: Emit) -> list[Candle]:
    return [decode(v, Candle) for t, _, v in out.records if t == topics.CANDLES]


def test_a_cycle_with_20k_pairs_where_one_changed_writes_one_pair_row() -> None:
    state = FakeState()
    stage = stage_of(state)
    now = 1_700_000_000_000
    trades = [
        Trade(pair=f"P{i}/USD", price=1.0, qty=1.0, side="buy", trade_id=1, ts_ms=now, source="t")
        for i in range(20_000)
    ]
    out = Emit()
    stage.handle_batch([message(t, i) for i, t in enumerate(trades)], now, out)
    stage.end_batch(now, out)
    assert len(out.rows[tables.STREAM_PAIR_STATES]) == 20_000
    assert len(out.rows[tables.STREAM_CHECKPOINTS]) == 1
    state.write(out)
    one = msgspec.structs.replace(trades[7], trade_id=2, ts_ms=now + 10)
    out = Emit()
    stage.handle_batch([message(one, 20_000)], now + 10, out)
    stage.end_batch(now + 10, out)
    assert [r.pair for r in out.rows[tables.STREAM_PAIR_STATES]] == ["P7/USD"]  # type: ignore[attr-defined]
    (cp,) = out.rows[tables.STREAM_CHECKPOINTS]
    assert isinstance(cp, StreamCheckpoint) and cp.offset == 0  # the open windows' first trade
    assert json.loads(cp.state) == {"consumed": 20_000}
    assert stage.counters()["pairs_in_memory"] == 20_000


def _replay(
    trades: list[Trade], state: FakeState, start: int, stage: CandleStage, now: int
) -> list[Candle]:
    got: list[Candle] = []
    for i in range(start, len(trades), 250):
        out = Emit()
        stage.handle_batch([message(t, j) for j, t in enumerate(trades[i : i + 250], i)], now, out)
        stage.end_batch(now, out)
        state.write(out)
        got += candles_of(out)
    return got


def test_restart_from_pair_rows_and_from_an_old_single_row_state_gives_identical_finals() -> None:
    trades = make_trades(3000, ("BTC/USD", "ETH/USD", "SOL/USD"), seed=21)
    want = finals(run(trades))
    now = 1_790_000_000_000
    for old_format in (False, True):
        state = FakeState()
        before = _replay(trades[:1700], state, 0, stage_of(state, (60, 300, 3600)), now)
        if old_format:  # one partition row holding every pair, as written before pair rows
            pairs = {
                r.pair: {k: v for k, v in json.loads(r.state).items() if k != "ids"}
                for r in state.pairs.values()
            }
            cp = state.checkpoints[0]
            data = {**json.loads(cp.state), "pairs": pairs}
            state.checkpoints[0] = msgspec.structs.replace(cp, state=json.dumps(data))
            state.pairs.clear()
        second = stage_of(state, (60, 300, 3600))
        (point,) = second.assign([(topics.TRADES, 0)]).values()
        after = _replay(trades, state, point.offset, second, now)
        if old_format:
            assert set(state.pairs) == {"BTC/USD", "ETH/USD", "SOL/USD"}  # now in pair rows
        second.builder.finish()
        after += second.builder.drain().candles
        assert {**finals(before), **finals(after)} == want


def _live(
    trades: list[Trade], evict_s: int, state: FakeState, holds: bool = False
) -> tuple[dict[Key, Candle], CandleStage, list[str]]:
    """Play trades live (wall clock = event time + 50 ms), a cycle and a tick every 500 ms."""
    stage = stage_of(state, (60, 300), pair_idle_evict_s=evict_s)
    got: list[Candle] = []
    dead: list[str] = []
    i, offset = 0, 0
    now = trades[0].ts_ms
    while i < len(trades):
        now += 500
        batch = []
        while i < len(trades) and trades[i].ts_ms + 50 <= now:
            batch.append(message(trades[i], offset))
            i, offset = i + 1, offset + 1
        out = Emit()
        stage.handle_batch(batch, now, out)
        if holds:
            state.watermarks = [
                msgspec.structs.replace(w, updated_ms=now) for w in state.watermarks
            ]
        stage.tick(now, out)
        stage.end_batch(now, out)
        state.write(out)
        got += candles_of(out)
        dead += [d.reason for d in out.dead]
    return finals(got), stage, dead


def test_evicted_pairs_come_back_from_their_rows_with_the_same_candles() -> None:
    t0 = 1_700_000_000_000
    spec: list[tuple[str, int]] = [("BTC/USD", t0 + k * 7_000) for k in range(2_000)]  # ~4 h
    spec += [("ETH/USD", t0 + k * 3_000) for k in range(200)]  # 10 min, then quiet 3 h
    spec += [("ETH/USD", t0 + 3 * 3_600_000 + k * 3_000) for k in range(100)]
    spec += [(p, t0 + 4 * 3_600_000) for p in ("BTC/USD", "ETH/USD")]  # close both
    trades = [
        Trade(pair=p, price=1.0 + i % 7, qty=1.0, side="buy", trade_id=i, ts_ms=ts, source="t")
        for i, (p, ts) in enumerate(sorted(spec, key=lambda s: s[1]))
    ]
    end_ms = t0 + 4 * 3_600_000 - GRACE_MS
    state = FakeState()
    kept, _, _ = _live(trades, 10**6, FakeState())
    evicting, stage, _ = _live(trades, 1_800, state)
    assert state.pair_loads == ["ETH/USD"] * 2  # evicted after each quiet spell, loaded back
    assert sorted(stage.builder.pairs()) == ["BTC/USD", "ETH/USD"]

    def upto(got: dict[Key, Candle]) -> dict[Key, Candle]:
        return {k: c for k, c in got.items() if c.window_end_ms <= end_ms}

    assert upto(evicting) == upto(kept)
    assert len(upto(kept)) > 300


def test_a_stuck_source_watermark_holds_an_idle_window_open_for_its_repair() -> None:
    t0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    clean = [
        Trade(
            pair="BTC/USD",
            price=10.0 + k % 5,
            qty=1.0,
            side="buy",
            trade_id=k,
            ts_ms=t0 + k * 1_000,
            source="t",
        )
        for k in range(150)
    ]
    want = finals(run(clean, [60, 300]))
    # 28 s the WS missed, across the minute's end: idle closing would close the minute
    silent = [t for t in clean if t0 + 40_000 <= t.ts_ms < t0 + 68_000]
    # the live feed, then the repair of the silent stretch when the feed comes back
    arrival = [t for t in clean if t not in silent]
    resume = next(k for k, t in enumerate(arrival) if t.ts_ms >= t0 + 68_000)
    state = FakeState()
    state.watermarks = [
        SourceWatermark(source="kraken", pair="BTC/USD", through_ms=t0 + 39_000, updated_ms=t0)
    ]
    stage = stage_of(state, (60, 300))
    got: list[Candle] = []
    dead: list[str] = []
    now = t0
    offset = 0
    for k, trade in enumerate(arrival):
        batch = [trade]
        if k == resume:
            batch = [*silent, trade]  # repaired trades, produced before the watermark moves
        while now < trade.ts_ms + 50:
            now += 500
            out = Emit()
            if now >= trade.ts_ms + 50:
                stage.handle_batch([message(t, offset + j) for j, t in enumerate(batch)], now, out)
                offset += len(batch)
            through_ms = t0 + 39_000 if now < t0 + 68_000 + 50 else now - 50
            state.watermarks = [
                SourceWatermark(
                    source="kraken", pair="BTC/USD", through_ms=through_ms, updated_ms=now
                )
            ]
            stage.tick(now, out)
            stage.end_batch(now, out)
            got += candles_of(out)
            dead += [d.reason for d in out.dead]
    stage.builder.finish()
    got += stage.builder.drain().candles
    assert dead == []
    assert finals(got) == want


def test_a_stale_source_watermark_does_not_hold_anything() -> None:
    t0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    state = FakeState()
    state.watermarks = [
        SourceWatermark(source="kraken", pair="BTC/USD", through_ms=t0, updated_ms=t0 - 601_000)
    ]
    stage = stage_of(state, (60,), watermark_max_age_s=600)
    out = Emit()
    trade = Trade(
        pair="BTC/USD", price=1.0, qty=1.0, side="buy", trade_id=1, ts_ms=t0 + 1, source="t"
    )
    stage.handle_batch([message(trade, 0)], t0 + 1, out)
    now = t0 + 1
    while now < t0 + 60_000 + GRACE_MS + 1_000:
        now += 500
        stage.tick(now, out)
    stage.end_batch(now, out)
    assert [c.window_start_ms for c in candles_of(out) if c.final] == [t0]


def test_a_watermark_is_applied_only_at_the_tick_after_the_one_that_read_it() -> None:
    t0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    trades = [
        Trade(
            pair="BTC/USD",
            price=5.0 + k % 3,
            qty=1.0,
            side="buy",
            trade_id=k,
            ts_ms=t0 + k * 1_000,
            source="t",
        )
        for k in range(60)
    ]
    state = FakeState()
    stuck = SourceWatermark(source="kraken", pair="BTC/USD", through_ms=t0 + 39_000, updated_ms=t0)
    state.watermarks = [stuck]
    stage = stage_of(state, (60,))
    got: list[Candle] = []
    dead: list[str] = []

    def cycle(now: int, batch: list[Trade], offset: int) -> None:
        out = Emit()
        stage.handle_batch([message(t, offset + j) for j, t in enumerate(batch)], now, out)
        stage.tick(now, out)
        stage.end_batch(now, out)
        got.extend(candles_of(out))
        dead.extend(d.reason for d in out.dead)

    cycle(t0 + 39_050, trades[:40], 0)  # the live feed, then silence
    for now in range(t0 + 40_000, t0 + 70_000, 500):  # the hold keeps minute 0 open
        state.watermarks = [msgspec.structs.replace(stuck, updated_ms=now)]
        cycle(now, [], 40)
    # the source has produced its repair and then moved its watermark; this cycle's consume
    # did not get the repair yet, the next one does
    state.watermarks = [
        msgspec.structs.replace(stuck, through_ms=t0 + 70_600, updated_ms=t0 + 70_600)
    ]
    cycle(t0 + 70_600, [], 40)  # reads it (the last read was at t0 + 69.5 s)
    assert not any(c.final for c in got)
    cycle(t0 + 71_000, trades[40:], 40)
    for now in range(t0 + 71_500, t0 + 80_000, 500):  # quiet, the source complete up to now
        state.watermarks = [msgspec.structs.replace(stuck, through_ms=now, updated_ms=now)]
        cycle(now, [], 60)
    assert dead == []
    assert finals(got) == finals(run(trades, [60]))


def test_one_at_a_time_and_in_batches_the_stage_decodes_and_dead_letters_alike() -> None:
    now = 1_700_000_100_000
    good = Trade(pair="BTC/USD", price=2.0, qty=1.0, side="buy", trade_id=1, ts_ms=now, source="t")
    records = [
        message(good, 0),
        Inbound(topics.TRADES, 0, 1, None, b'{"pair":"BTCUSD"}', now),
        Inbound(topics.TRADES, 0, 2, None, encode(good).replace(b"2.0", b"-2.0"), now),
    ]
    one, batched = stage_of(FakeState()), stage_of(FakeState())
    one_out, batched_out = Emit(), Emit()
    for record in records:
        one.handle(record, now, one_out)
    assert batched.handle_batch(records, now, batched_out) == 3
    assert one_out.dead == batched_out.dead
    assert [(d.topic, d.partition, d.offset) for d in one_out.dead] == [
        (topics.TRADES, 0, 1),
        (topics.TRADES, 0, 2),
    ]
    assert one.builder.n_trades == batched.builder.n_trades == 1
