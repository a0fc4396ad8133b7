"""The generic consume → handle → ship → commit loop that every streaming stage runs in.

Order of one cycle: consume a batch; turn each message into a transport-free Inbound and feed
those to the stage; produce what it emitted (records and dead letters) and wait for the broker's
acks; write rows to the DB and commit that; only then commit the offsets the stage calls safe. A
crash anywhere replays from the last safe offset.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import tenacity
from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from cryptopred_core import topics
from cryptopred_core.kafka import make_consumer, make_producer
from cryptopred_core.pipeline.resume import ResumePoint, stale_reason
from cryptopred_core.pipeline.stage import Emit, Inbound, Stage
from cryptopred_core.pipeline.writer import DbWriter
from cryptopred_core.records import encode
from cryptopred_core.retry import broker_retrying
from cryptopred_core.settings import Settings

log = logging.getLogger(__name__)

#: how long a resume check waits for the record before a saved point (tansu: silence past the end)
PROBE_TIMEOUT_S = 5.0
_PAST_THE_END = (
    KafkaError._PARTITION_EOF,
    KafkaError._AUTO_OFFSET_RESET,
    KafkaError.OFFSET_OUT_OF_RANGE,
)


def inbound(message: Message, now_ms: int) -> Inbound:
    """The transport-free record of a consumed Kafka message (one without an error); a
    message without a broker timestamp gets `now_ms`, the wall time it was consumed at."""
    ts_type, ts_ms = message.timestamp()
    return Inbound(
        topic=str(message.topic()),
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value() or b"",
        timestamp_ms=ts_ms if ts_type != TIMESTAMP_NOT_AVAILABLE else now_ms,
    )


class DeliveryError(Exception):
    """The broker refused a produced record; the cycle's offsets are not committed."""


class InjectedFaultError(Exception):
    """A fault injected by a test (`StageRunner.inject_fault`), raised like a stage's own bug."""


@dataclass
class RunnerStats:
    """Counters for `status` and metrics."""

    consumed: int = 0
    produced: int = 0
    dead: int = 0
    rows: int = 0
    commits: int = 0
    stale_resume_points: int = 0
    started_s: float = field(default_factory=time.monotonic)
    last_event_ms: int | None = None
    lag: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started_s, 1e-9)
        return {
            "consumed": self.consumed,
            "produced": self.produced,
            "dead": self.dead,
            "rows": self.rows,
            "commits": self.commits,
            "stale_resume_points": self.stale_resume_points,
            "consumed_per_s": self.consumed / elapsed,
            "last_event_ms": self.last_event_ms,
            "lag": dict(self.lag),
            "lag_total": sum(self.lag.values()),
        }


class StageRunner:
    """Runs one Stage over Kafka in a consumer group, optionally writing rows to the DB."""

    def __init__(
        self,
        settings: Settings,
        stage: Stage,
        group_id: str,
        *,
        writer: DbWriter | None = None,
        batch_size: int = 5000,
        poll_timeout_s: float = 0.02,
        tick_interval_ms: int = 200,
        consumer_overrides: dict[str, Any] | None = None,
        consumer: Consumer | None = None,
        producer: Producer | None = None,
    ) -> None:
        self.settings = settings
        self.stage = stage
        self.writer = writer
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.tick_interval_ms = tick_interval_ms
        self.group_id = group_id
        self.stats = RunnerStats()
        self.consumer: Consumer = consumer or make_consumer(
            settings, group_id, **(consumer_overrides or {})
        )
        # a delivery report (a Python callback) only for a failed record, not for every record
        self.producer: Producer = producer or make_producer(
            settings, **{"linger.ms": 5, "delivery.report.only.error": True}
        )
        # a record is either acknowledged or failed within message.timeout.ms; wait a bit longer
        self.flush_timeout_s = settings.producer_timeout_ms / 1000 + 5
        self._committed: dict[tuple[str, int], int] = {}
        self._last_tick_ms = 0
        self._delivery_errors: list[str] = []
        self._fault: str | None = None
        self.consumer.subscribe(
            list(stage.topics), on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    # rebalance callbacks run inside consume(), after the previous cycle fully committed
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("%s assigned %s", self.stage.name, [(p.topic, p.partition) for p in partitions])
        points = self.stage.assign([(p.topic, p.partition) for p in partitions])
        stale = self._stale(points)
        if stale:  # the stage forgets that state; the group's committed offset applies
            self.stage.revoke(list(stale))
            for (topic, partition), reason in stale.items():
                log.warning(
                    "%s: saved state of %s[%d] not used: %s",
                    self.stage.name,
                    topic,
                    partition,
                    reason,
                )
            self.stats.stale_resume_points += len(stale)
        starts = {tp: point.offset for tp, point in points.items() if tp not in stale}
        if starts:
            for tp in partitions:
                start = starts.get((tp.topic, tp.partition))
                if start is not None:
                    tp.offset = start
                    self._committed[(tp.topic, tp.partition)] = start
            consumer.assign(partitions)

    def _stale(self, points: dict[tuple[str, int], ResumePoint]) -> dict[tuple[str, int], str]:
        """The resume points that no longer fit their topic, with the reason (see `resume`)."""
        previous = _records_before(self.settings, self.group_id, points)
        reasons = {
            tp: stale_reason(p, tp in previous, previous.get(tp)) for tp, p in points.items()
        }
        return {tp: reason for tp, reason in reasons.items() if reason is not None}

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = [(p.topic, p.partition) for p in partitions]
        self.stage.revoke(gone)
        for tp in gone:
            self._committed.pop(tp, None)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(str(err))

    def inject_fault(self, message: str) -> None:
        """Tests only: the next cycle raises InjectedFaultError(message) in the stage thread."""
        self._fault = message

    def step(self, now_ms: int | None = None) -> int:
        """One cycle; returns how many messages were consumed."""
        if self._fault is not None:
            message, self._fault = self._fault, None
            raise InjectedFaultError(message)
        messages = self.consumer.consume(self.batch_size, timeout=self.poll_timeout_s)
        clock_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        out = Emit()
        good = [inbound(msg, clock_ms) for msg in messages if msg.error() is None]
        if len(good) < len(messages):
            for msg in messages:
                error = msg.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s consume error: %s", self.stage.name, error)
        count = self.stage.handle_batch(good, clock_ms, out) if good else 0
        # tick (wall-clock work such as closing idle windows) only when caught up: a full
        # batch means a backlog, in which quiet inputs are not idle, just not read yet
        if count < self.batch_size and clock_ms - self._last_tick_ms >= self.tick_interval_ms:
            self.stage.tick(clock_ms, out)
            self._last_tick_ms = clock_ms
        self.stage.end_batch(clock_ms, out)
        self._ship(out)
        self._commit()
        self.stats.consumed += count
        self.stats.last_event_ms = self.stage.last_event_ms()
        return count

    def _ship(self, out: Emit) -> None:
        for topic, key, value in out.records:
            self._produce(topic, key, value)
        for dead in out.dead:
            log.warning("%s dead letter: %s", dead.stage, dead.reason)
            self._produce(topics.DLQ, dead.stage.encode(), encode(dead))
        if out.records or out.dead:
            remaining = self.producer.flush(self.flush_timeout_s)
            if remaining or self._delivery_errors:
                errors, self._delivery_errors = self._delivery_errors, []
                raise DeliveryError(f"{remaining} records unacknowledged; errors: {errors[:3]}")
        self.stats.produced += len(out.records)
        self.stats.dead += len(out.dead)
        if self.writer is not None and out.rows:
            self.stats.rows += self.writer.write(out.rows)

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        """Queue one record; while the local queue is full, serve delivery reports until it
        drains (every queued record is acknowledged or failed within message.timeout.ms)."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(BufferError),
            wait=tenacity.wait_none(),
            stop=tenacity.stop_after_delay(self.flush_timeout_s),
            before_sleep=self._serve_delivery_reports,
            reraise=True,
        )
        retrying(self.producer.produce, topic, value=value, key=key, on_delivery=self._on_delivery)

    def _serve_delivery_reports(self, _state: tenacity.RetryCallState) -> None:
        self.producer.poll(0.05)

    def _commit(self) -> None:
        safe = self.stage.safe_offsets()
        advanced = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in safe.items()
            if offset > self._committed.get((topic, partition), -1)
        ]
        if not advanced:
            return
        # a retriable broker error is retried; anything else (e.g. the member was thrown out
        # of its group after max.poll.interval.ms) fails the stage, which then restarts
        broker_retrying("offset commit", self.settings.broker_retry_max_s)(
            self.consumer.commit, offsets=advanced, asynchronous=False
        )
        for tp in advanced:
            self._committed[(tp.topic, tp.partition)] = tp.offset
        self.stats.commits += 1

    def refresh_lag(self) -> dict[str, int]:
        """Records behind the high watermark, per topic-partition this member owns. A broker
        that does not answer within 2 s leaves the previous figures (lag is only reported)."""
        lag = {}
        for tp in self.consumer.assignment():
            try:
                _, high = self.consumer.get_watermark_offsets(tp, timeout=2, cached=False)
            except KafkaException as exc:
                log.info("%s: lag not refreshed: %s", self.stage.name, exc)
                return self.stats.lag
            position = self.consumer.position([tp])[0].offset
            start = position if position >= 0 else self._committed.get((tp.topic, tp.partition), 0)
            lag[f"{tp.topic}[{tp.partition}]"] = max(int(high) - int(start), 0)
        self.stats.lag = lag
        return lag

    def run(self, stop: threading.Event, lag_every_s: float = 2.0) -> None:
        """Cycle until `stop` is set, then close the consumer (leaving the group).

        An error propagates without the graceful close (which could block on the failed broker
        or DB): the caller fails the stage and its process ends."""
        next_lag = 0.0
        while not stop.is_set():
            self.step()
            if time.monotonic() >= next_lag:
                self.refresh_lag()
                next_lag = time.monotonic() + lag_every_s
        self.close()

    def close(self) -> None:
        self.producer.flush(self.flush_timeout_s)
        self.consumer.close()
        if self.writer is not None:
            self.writer.close()


def _records_before(
    settings: Settings, group_id: str, points: dict[tuple[str, int], ResumePoint]
) -> dict[tuple[str, int], int | None]:
    """Fetch the record at each point's offset - 1, through a consumer of its own outside the
    group: {(topic, partition): its timestamp (None without one)} for those that exist. A
    partition that ends before (end of partition, offset out of range, or no answer within
    PROBE_TIMEOUT_S: tansu stays silent past the end) is left out, as is a point at offset 0."""
    points = {tp: point for tp, point in points.items() if point.offset > 0}
    if not points:
        return {}
    probe = make_consumer(
        settings,
        f"{group_id}.resume-check",
        **{"enable.partition.eof": True, "auto.offset.reset": "error"},
    )
    found: dict[tuple[str, int], int | None] = {}
    pending = set(points)
    try:
        probe.assign([TopicPartition(t, p, points[(t, p)].offset - 1) for t, p in points])
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while pending and time.monotonic() < deadline:
            msg = probe.poll(0.1)
            if msg is None:
                continue
            key = (str(msg.topic()), int(msg.partition() or 0))
            if key not in pending:
                continue
            error = msg.error()
            if error is None:
                ts_type, ts_ms = msg.timestamp()
                found[key] = int(ts_ms) if ts_type != TIMESTAMP_NOT_AVAILABLE else None
                pending.discard(key)
            elif error.code() in _PAST_THE_END:
                pending.discard(key)
            else:
                log.warning("resume check of %s: %s", key, error)
    finally:
        probe.close()
    return found
