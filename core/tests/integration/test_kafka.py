"""Produce and consume records through the real tansu broker in a consumer group."""

import time

import pytest

from cryptopred_core.kafka import ensure_topics, make_consumer, make_producer
from cryptopred_core.records import Trade, decode, encode

pytestmark = pytest.mark.integration


def test_records_flow_through_the_broker_in_a_consumer_group(broker, unique):
    topic = f"trades-{unique}"
    assert ensure_topics(broker, [topic], partitions=2) == [topic]
    assert ensure_topics(broker, [topic], partitions=2) == []  # second call is a no-op

    sent = [
        Trade(
            pair=pair,
            price=100.0 + i,
            qty=1.0,
            side="buy",
            trade_id=i,
            ts_ms=1_700_000_000_000 + i,
            source="test",
        )
        for i in range(200)
        for pair in ("BTC/USD", "ETH/USD")
    ]
    producer = make_producer(broker)
    for t in sent:
        producer.produce(topic, key=t.pair.encode(), value=encode(t))
    assert producer.flush(30) == 0

    consumer = make_consumer(broker, f"group-{unique}")
    consumer.subscribe([topic])
    got: list[Trade] = []
    partitions_by_pair: dict[str, set[int]] = {}
    deadline = time.monotonic() + 60
    while len(got) < len(sent) and time.monotonic() < deadline:
        for msg in consumer.consume(500, timeout=1.0):
            assert msg.error() is None, msg.error()
            trade = decode(msg.value(), Trade)
            assert msg.key() == trade.pair.encode()
            partitions_by_pair.setdefault(trade.pair, set()).add(msg.partition())
            got.append(trade)
            consumer.store_offsets(message=msg)  # offsets are stored only explicitly
    consumer.commit(asynchronous=False)
    consumer.close()

    assert sorted(got, key=lambda t: (t.pair, t.trade_id)) == sorted(
        sent, key=lambda t: (t.pair, t.trade_id)
    )
    # keyed by pair: every pair stays on one partition, in order
    assert all(len(p) == 1 for p in partitions_by_pair.values())
    for pair in ("BTC/USD", "ETH/USD"):
        ids = [t.trade_id for t in got if t.pair == pair]
        assert ids == sorted(ids)

    # the group committed its offsets: a new member of the same group sees nothing more
    again = make_consumer(broker, f"group-{unique}")
    again.subscribe([topic])
    leftovers = []
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        leftovers += [m for m in again.consume(100, timeout=0.5) if m.error() is None]
    again.close()
    assert leftovers == []
