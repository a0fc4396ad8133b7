"""The runner on a real broker paused (SIGSTOP) past the producer's timeout: the cycle fails
with DeliveryError in bounded time and commits nothing; a new runner (the restarted stage)
delivers every record, none lost."""

import os
import signal
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from cryptopred.stack.parts import Broker
from cryptopred_core.kafka import ensure_topics, make_producer
from cryptopred_core.pipeline.runner import DeliveryError, StageRunner
from cryptopred_core.pipeline.stage import Emit, Inbound, Stage
from cryptopred_core.ports import free_port
from cryptopred_testsupport.readback import read_until_quiet

pytestmark = pytest.mark.integration


class Forwarder(Stage):
    """Copies each record to `out`; the first one it sees pauses the broker (once)."""

    name = "forwarder"

    def __init__(self, source: str, out: str, pause=None) -> None:
        self.topics = (source,)
        self.out = out
        self.pause = pause
        self.next: dict[tuple[str, int], int] = {}

    def handle(self, message: Inbound, now_ms: int, out: Emit) -> None:
        if self.pause is not None:
            self.pause()
            self.pause = None
        self.next[(message.topic, message.partition)] = message.offset + 1
        out.records.append((self.out, b"k", message.value))

    def safe_offsets(self):
        return dict(self.next)


def committed(settings, group, topic):
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group})
    got = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    consumer.close()
    return got[0].offset


@pytest.fixture
def paused_broker(tmp_path):
    from cryptopred_core.settings import Settings

    base = Settings(data_dir=tmp_path, broker_port=free_port(), producer_timeout_ms=2000)
    part = Broker(base)
    part.start()
    record = part.record()
    assert record is not None
    try:
        yield base.model_copy(update={"kafka_bootstrap": part.address}), record.pid
    finally:
        os.kill(record.pid, signal.SIGCONT)
        part.stop()


def test_a_broker_paused_past_the_producer_timeout_fails_the_cycle_and_loses_nothing(
    paused_broker, unique
):
    s, broker_pid = paused_broker
    source, out, group = f"in-{unique}", f"out-{unique}", f"fwd-{unique}"
    ensure_topics(s, [source, out], partitions=1)
    producer = make_producer(s)
    values = [f"v{i}".encode() for i in range(50)]
    for v in values:
        producer.produce(source, key=b"k", value=v)
    assert producer.flush(30) == 0

    first = StageRunner(
        s, Forwarder(source, out, pause=lambda: os.kill(broker_pid, signal.SIGSTOP)), group
    )
    start_s = time.monotonic()
    try:
        with pytest.raises(DeliveryError):
            for _ in range(2000):
                first.step()
        assert time.monotonic() - start_s < 20  # bounded by producer_timeout_ms (2 s) + 5 s
    finally:
        os.kill(broker_pid, signal.SIGCONT)
    first.consumer.close()  # the failed stage's process ends
    assert committed(s, group, source) < 0  # nothing committed past undelivered records

    second = StageRunner(s, Forwarder(source, out), group)
    deadline = time.monotonic() + 90
    while committed(s, group, source) < len(values) and time.monotonic() < deadline:
        for _ in range(20):
            second.step()
    second.close()
    assert committed(s, group, source) == len(values)
    delivered = {m.value() for m in read_until_quiet(s, out, 2.0)}
    assert delivered == set(values)  # at least once: every record, none lost
