"""Read a whole topic back with assign() (no group join)."""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from cryptopred_core.settings import Settings


def read_all(
    settings: Settings, topic: str, expect: int | None = None, timeout_s: float = 30.0
) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every record, once `expect` were read or the topic's end was reached."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "readback",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        consumer.assign(parts)
        out: list[tuple[bytes | None, bytes | None]] = []
        at_eof: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == -191:  # _PARTITION_EOF
                    at_eof.add(int(msg.partition() or 0))
                    if len(at_eof) == len(parts) and (expect is None or len(out) >= expect):
                        break
                continue
            at_eof.discard(int(msg.partition() or 0))
            out.append((msg.key(), msg.value()))
        return out
    finally:
        consumer.close()


def read_until_quiet(settings: Settings, topic: str, quiet_s: float = 3.0) -> list[Message]:
    """Every record of a topic, read with assign() until no record came for `quiet_s`.

    tansu 0.6 under-reports the high watermark (base offset + 1 of the last batch), so neither
    it nor partition EOF events can say when the end is reached.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "readback",
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        out = []
        while (msg := consumer.poll(quiet_s)) is not None:
            if msg.error() is None:
                out.append(msg)
        return out
    finally:
        consumer.close()
