"""The runner's conversion of a consumed Kafka message into the stage's transport-free record."""

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, Message

from cryptopred_core.pipeline.runner import inbound
from cryptopred_core.pipeline.stage import Inbound

NOW_MS = 1_700_000_999_000


def test_a_message_becomes_an_inbound_with_its_place_key_value_and_broker_timestamp() -> None:
    message = Message(
        topic="trades",
        partition=3,
        offset=41,
        key=b"BTC/USD",
        value=b'{"pair":"BTC/USD"}',
        timestamp=(TIMESTAMP_CREATE_TIME, 1_700_000_000_123),
    )
    assert inbound(message, NOW_MS) == Inbound(
        topic="trades",
        partition=3,
        offset=41,
        key=b"BTC/USD",
        value=b'{"pair":"BTC/USD"}',
        timestamp_ms=1_700_000_000_123,
    )


def test_a_message_without_timestamp_key_or_value_gets_the_wall_time_and_empty_bytes() -> None:
    message = Message(
        topic="candles", partition=0, offset=0, timestamp=(TIMESTAMP_NOT_AVAILABLE, 0)
    )
    record = inbound(message, NOW_MS)
    assert record.timestamp_ms == NOW_MS
    assert record.key is None
    assert record.value == b""
    assert (record.topic, record.partition, record.offset) == ("candles", 0, 0)
