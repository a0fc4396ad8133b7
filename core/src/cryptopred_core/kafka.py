"""Kafka producer, consumer and topic factories shared by every stage."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from cryptopred_core.settings import Settings


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Idempotent producer: acks=all, ordered per partition, batched for throughput."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 1_000_000,
        "compression.type": "none",
        # a record the broker has not acknowledged within this time fails (delivery report)
        "message.timeout.ms": settings.producer_timeout_ms,
    }
    config.update(overrides)
    return config


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Consumer in `group_id`, from the earliest offset, committing only explicitly."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "session.timeout.ms": settings.consumer_session_timeout_ms,
        "heartbeat.interval.ms": max(settings.consumer_session_timeout_ms // 6, 500),
        # a member that does not poll this long (e.g. stuck on the DB) leaves the group
        "max.poll.interval.ms": max(
            settings.consumer_max_poll_interval_ms, settings.consumer_session_timeout_ms
        ),
        "partition.assignment.strategy": "range",
        # bigger fetches: a stage catching up reads at memory speed, not one round trip per MB
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
        "queued.min.messages": 200_000,
        # tansu answers an empty fetch only when fetch.wait.max.ms runs out (librdkafka's
        # default 500 ms would be the latency of every live record), so keep it short
        "fetch.wait.max.ms": 20,
    }
    config.update(overrides)
    return config


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    return Producer(producer_config(settings, **overrides))


def make_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(settings, group_id, **overrides))


def make_admin(settings: Settings) -> AdminClient:
    # log_level 0 keeps librdkafka quiet while a health check polls a broker that is not up yet.
    return AdminClient({"bootstrap.servers": settings.bootstrap_servers, "log_level": 0})


def ensure_topics(
    settings: Settings, names: Iterable[str], partitions: int | None = None, timeout_s: float = 30
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = make_admin(settings)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [n for n in names if n not in existing]
    if not wanted:
        return []
    count = partitions or settings.topic_partitions
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=count, replication_factor=1) for n in wanted],
        operation_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created


def broker_healthy(settings: Settings, timeout_s: float = 3) -> bool:
    """True when the broker answers a metadata request."""
    try:
        make_admin(settings).list_topics(timeout=timeout_s)
        return True
    except KafkaException:
        return False


def wait_for_broker(settings: Settings, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not broker_healthy(settings, timeout_s=2):
        if time.monotonic() > deadline:
            raise TimeoutError(f"broker at {settings.bootstrap_servers} did not answer")
        time.sleep(0.2)
