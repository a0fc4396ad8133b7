import msgspec

from cryptopred_core.records import DeadLetter, Trade, decode
from cryptopred_ingest.pacing import Pacer, parse_speed
from cryptopred_ingest.publish import Batch, Publisher, Reject, make_trade
from cryptopred_testsupport.memory import MemoryProducer

TS = 1_767_225_600_000


def test_trades_keyed_by_pair_rejects_to_dlq_keyed_by_stage():
    producer = MemoryProducer()
    pub = Publisher(producer, stage="ingest-test")
    good = Trade(pair="ETH/EUR", price=2.0, qty=3.0, side="sell", trade_id=4, ts_ms=TS, source="t")
    pub.batch(Batch(trades=[good], rejects=[Reject("price: bad", "raw,text")]))
    [(key, value)] = producer.topic("trades")
    assert key == b"ETH/EUR" and decode(value, Trade) == good
    [(dkey, dvalue)] = producer.topic("dlq")
    letter = decode(dvalue, DeadLetter)
    assert dkey == b"ingest-test" and letter.stage == "ingest-test"
    assert (letter.reason, letter.raw) == ("price: bad", "raw,text") and letter.ts_ms > TS
    assert pub.counts.trades == 1 and pub.counts.rejects == 1 and pub.counts.by_reason["price"] == 1


def test_make_trade_turns_validation_errors_into_rejects():
    bad = make_trade(
        "x",
        pair="BTC/USD",
        price=float("nan"),
        qty=1.0,
        side="buy",
        trade_id=1,
        ts_ms=TS,
        source="t",
    )
    assert isinstance(bad, Reject) and bad.reason.startswith("price") and bad.raw == "x"
    absurd = make_trade(
        "y", pair="BTC/USD", price=1.0, qty=1.0, side="buy", trade_id=1, ts_ms=10**16, source="t"
    )
    assert isinstance(absurd, Reject) and absurd.reason.startswith("ts_ms")


def test_encoded_fast_path_counts():
    producer = MemoryProducer()
    pub = Publisher(producer, stage="s")
    t = Trade(pair="BTC/USD", price=2.0, qty=3.0, side="sell", trade_id=4, ts_ms=TS, source="t")
    pub.encoded(b"BTC/USD", [msgspec.json.encode(t)] * 3)
    assert pub.counts.trades == 3 and len(producer.topic("trades")) == 3


def test_parse_speed():
    assert parse_speed("max") is None and parse_speed("MAX") is None
    assert parse_speed("60") == 60.0
    for bad in ("0", "-1", "fast", "inf", "nan"):
        try:
            parse_speed(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_pacer_waits_event_time_over_speed():
    now = [0.0]
    waits = []

    class Stop:
        def wait(self, s):
            waits.append(s)
            now[0] += s

    pacer = Pacer(10.0, clock=lambda: now[0], stop=Stop())  # type: ignore[arg-type]
    pacer.wait_until(TS)
    pacer.wait_until(TS + 5000)  # 5 s of event time at 10x -> 0.5 s
    now[0] += 0.2
    pacer.wait_until(TS + 6000)  # due at 0.6 s, now 0.7 s: no wait
    assert waits == [0.5]


def test_pump_paces_in_event_time():
    import time

    from cryptopred_ingest.pump import pump

    trades = [
        Trade(
            pair="BTC/USD",
            price=1.0,
            qty=1.0,
            side="buy",
            trade_id=i,
            ts_ms=TS + i * 1000,
            source="t",
        )
        for i in range(5)
    ]
    producer = MemoryProducer()
    start = time.monotonic()
    pump([Batch(trades=trades)], Publisher(producer, "s"), speed=20.0)  # 4 s of events at 20x
    elapsed = time.monotonic() - start
    assert 0.18 <= elapsed < 1.0 and len(producer.topic("trades")) == 5
    start = time.monotonic()
    pump([Batch(trades=trades)], Publisher(MemoryProducer(), "s"), speed=None)
    assert time.monotonic() - start < 0.1


def test_pump_on_wall_clock_sends_the_past_at_once_and_the_future_on_time():
    import time

    from cryptopred_ingest.pump import pump

    now_ms = time.time_ns() // 1_000_000

    def trade(i: int, ts_ms: int) -> Trade:
        return Trade(
            pair="BTC/USD", price=1.0, qty=1.0, side="buy", trade_id=i, ts_ms=ts_ms, source="t"
        )

    past = Batch(trades=[trade(i, now_ms - 3_600_000 + i) for i in range(1, 1000)])
    future = Batch(trades=[trade(1000, now_ms - 10), trade(1001, now_ms + 400)])
    producer = MemoryProducer()
    seen_at: list[float] = []
    start = time.monotonic()
    pump(
        [past, future],
        Publisher(producer, "s"),
        wall_clock=True,
        on_batch=lambda b: seen_at.append(time.monotonic() - start),
    )
    assert len(producer.topic("trades")) == 1001
    assert seen_at[0] < 0.3  # an hour of history did not wait
    assert 0.35 <= seen_at[1] < 1.5  # the future trade waited for its time
