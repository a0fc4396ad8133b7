"""The stage runner under faults, with a fake broker: dead letters, delivery failures, commits,
the test-only fault hook (no Kafka, DB or Ray)."""

import threading

import pytest
from confluent_kafka import KafkaError, KafkaException, Message

from cryptopred_core import topics
from cryptopred_core.kafka import consumer_config, producer_config
from cryptopred_core.pipeline.runner import DeliveryError, InjectedFaultError, StageRunner
from cryptopred_core.pipeline.stage import Emit, Inbound, Stage
from cryptopred_core.records import Candle, DeadLetter, decode
from cryptopred_core.settings import Settings

MAX_MESSAGE_BYTES = 1_000_000  # the broker's and librdkafka's default message.max.bytes


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._topic, self._partition, self._offset, self._value = topic, partition, offset, value

    def topic(self):
        return self._topic

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset

    def key(self):
        return b"k"

    def value(self):
        return self._value

    def timestamp(self):
        return (1, 1_700_000_000_000)

    def error(self):
        return None


class FakeConsumer:
    def __init__(self, batches=()) -> None:
        self.batches = list(batches)
        self.commits: list[list[tuple[str, int, int]]] = []
        self.commit_errors: list[Exception] = []
        self.closed = False

    def subscribe(self, topics, on_assign=None, on_revoke=None):
        pass

    def consume(self, num_messages, timeout):
        return self.batches.pop(0) if self.batches else []

    def commit(self, offsets, asynchronous):
        if self.commit_errors:
            raise self.commit_errors.pop(0)
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def assignment(self):
        return []

    def close(self):
        self.closed = True


class FakeProducer:
    def __init__(self, unacknowledged: int = 0, buffer_full: bool = False) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.unacknowledged = unacknowledged
        self.buffer_full = buffer_full

    def produce(self, topic, value, key, on_delivery):
        if self.buffer_full:
            raise BufferError("Local: Queue full")
        if len(value) > MAX_MESSAGE_BYTES:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.sent.append((topic, key, value))

    def poll(self, timeout):
        return 0

    def flush(self, timeout):
        return self.unacknowledged


class CandleReader(Stage):
    """Decodes candles; everything else goes to the dlq."""

    name = "reader"
    topics = ("in",)

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = {}

    def handle(self, message: Inbound, now_ms: int, out: Emit) -> None:
        self.next[(message.topic, message.partition)] = message.offset + 1
        self.decode_or_dead_letter(message, Candle, now_ms, out)

    def safe_offsets(self):
        return dict(self.next)


def runner(consumer, producer, **settings) -> StageRunner:
    return StageRunner(
        Settings(**settings), CandleReader(), "g", consumer=consumer, producer=producer
    )


def test_a_2mb_garbage_record_becomes_a_bounded_dead_letter_and_its_offset_is_committed():
    garbage = b"\xff{" * 1_000_000  # ~2 MB, not a record
    consumer = FakeConsumer([[FakeMessage("in", 0, 7, garbage)]])
    producer = FakeProducer()
    r = runner(consumer, producer)
    r.step(now_ms=1)
    [(topic, _key, value)] = producer.sent
    assert topic == topics.DLQ
    assert len(value) < MAX_MESSAGE_BYTES
    letter = decode(value, DeadLetter)
    assert letter.stage == "reader"
    assert letter.raw_bytes == len(garbage)
    assert consumer.commits == [[("in", 0, 8)]]


def test_a_delivery_failure_fails_the_cycle_and_commits_nothing():
    consumer = FakeConsumer([[FakeMessage("in", 0, 0, b"bad")]])
    r = runner(consumer, FakeProducer(unacknowledged=1))
    with pytest.raises(DeliveryError):
        r.step(now_ms=1)
    assert consumer.commits == []


def test_a_full_producer_queue_is_waited_on_for_a_bounded_time():
    consumer = FakeConsumer([[FakeMessage("in", 0, 0, b"bad")]])
    r = runner(consumer, FakeProducer(buffer_full=True))
    r.flush_timeout_s = 0.3
    with pytest.raises(BufferError):
        r.step(now_ms=1)
    assert consumer.commits == []


def test_a_retriable_commit_error_is_retried_and_another_fails_the_stage():
    consumer = FakeConsumer([[FakeMessage("in", 0, 0, b"bad")], [FakeMessage("in", 0, 1, b"x")]])
    consumer.commit_errors = [KafkaException(KafkaError(KafkaError._TIMED_OUT, retriable=True))]
    r = runner(consumer, FakeProducer())
    r.step(now_ms=1)
    assert consumer.commits == [[("in", 0, 1)]]
    consumer.commit_errors = [KafkaException(KafkaError(KafkaError.UNKNOWN_MEMBER_ID))]
    with pytest.raises(KafkaException):
        r.step(now_ms=2)
    assert consumer.commits == [[("in", 0, 1)]]


def test_an_injected_fault_raises_in_the_next_cycle_and_run_ends_without_a_graceful_close():
    consumer = FakeConsumer()
    r = runner(consumer, FakeProducer())
    r.inject_fault("injected by a test")
    with pytest.raises(InjectedFaultError, match="injected by a test"):
        r.run(threading.Event())
    assert not consumer.closed  # the process ends; a close could block on a failed broker


def test_broker_calls_are_bounded_by_the_settings():
    s = Settings(producer_timeout_ms=12_000, consumer_max_poll_interval_ms=90_000)
    assert producer_config(s)["message.timeout.ms"] == 12_000
    assert consumer_config(s, "g")["max.poll.interval.ms"] == 90_000
    defaults = Settings()
    assert producer_config(defaults)["message.timeout.ms"] == 30_000
    assert consumer_config(defaults, "g")["max.poll.interval.ms"] == 300_000
    assert defaults.db_timeout_s == 10 and defaults.db_retry_max_s == 60
    assert defaults.fault_hooks is False


def test_a_silent_broker_leaves_the_lag_as_it_was_instead_of_failing_the_stage():
    class SilentBroker(FakeConsumer):
        def assignment(self):
            return [type("TP", (), {"topic": "in", "partition": 0})()]

        def get_watermark_offsets(self, tp, timeout, cached):
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))

    r = runner(SilentBroker(), FakeProducer())
    r.stats.lag = {"in[0]": 5}
    assert r.refresh_lag() == {"in[0]": 5}


def test_consume_errors_are_skipped_and_the_stage_is_fed_transport_free_records():
    class Recorder(CandleReader):
        def __init__(self) -> None:
            super().__init__()
            self.received: list[Inbound] = []

        def handle(self, message: Inbound, now_ms: int, out: Emit) -> None:
            self.received.append(message)
            super().handle(message, now_ms, out)

    failed = Message(topic="in", partition=0, error=KafkaError(KafkaError._TRANSPORT))
    consumer = FakeConsumer([[FakeMessage("in", 0, 3, b"bad"), failed]])
    stage = Recorder()
    r = StageRunner(Settings(), stage, "g", consumer=consumer, producer=FakeProducer())
    assert r.step(now_ms=1) == 1
    assert stage.received == [Inbound("in", 0, 3, b"k", b"bad", 1_700_000_000_000)]
    assert consumer.commits == [[("in", 0, 4)]]
