"""Validate trades and route them: good ones to `trades` (key = pair), bad ones to `dlq`."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from cryptopred_core.kafka import make_producer
from cryptopred_core.records import RecordError, Trade, dead_letter, encode
from cryptopred_core.settings import Settings
from cryptopred_core.topics import DLQ, TRADES

log = logging.getLogger(__name__)

POLL_EVERY = 20_000  # produce() calls between poll(0): serving delivery callbacks is not free
REASON_MAX_CHARS = 200  # a reject's reason (and its log line) stays short whatever the input

DeliveryCallback = Callable[[Any, Any], None]


class DeliveryError(Exception):
    """Records the broker never acknowledged (expired, refused, or still queued at flush).

    Not a network error: a source that meets it ends, so nothing advances past the lost records.
    """

    def __init__(self, undelivered: int, detail: str) -> None:
        super().__init__(f"{undelivered} records not delivered ({detail})")
        self.undelivered = undelivered


class ProducerLike(Protocol):
    """The part of confluent_kafka.Producer a publisher uses."""

    def produce(
        self,
        topic: str,
        value: str | bytes | None = None,
        key: str | bytes | None = None,
        *,
        on_delivery: DeliveryCallback | None = None,
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


@dataclass(frozen=True)
class Reject:
    """An input a source could not turn into a trade: why, and the raw payload text."""

    reason: str
    raw: str


@dataclass
class Batch:
    """What a source hands the publisher in one go.

    `encoded` holds validated trades of the pair `encoded_key`, already JSON (the fast path).
    """

    trades: list[Trade] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    encoded_key: bytes = b""


_TRADE_JSON = (
    b'{"pair":"%b","price":%b,"qty":%b,"side":"%b","trade_id":%d,"ts_ms":%d,"source":"%b"}'
)


def encode_trade_columns(
    pair: str,
    prices: list[float],
    qtys: list[float],
    buys: list[bool],
    trade_ids: list[int],
    ts_ms: list[int],
    source: str,
) -> list[bytes]:
    """JSON of many validated trades of one pair, byte-identical to `encode(Trade(...))`.

    Floats are formatted by msgspec in one call per column, so this is the records codec's
    own number text; callers must have validated the values (finite, > 0, ts in range).
    """
    price_text = msgspec.json.encode(prices)[1:-1].split(b",")
    qty_text = msgspec.json.encode(qtys)[1:-1].split(b",")
    pair_b, source_b, template = pair.encode(), source.encode(), _TRADE_JSON
    return [
        template % (pair_b, p, q, b"buy" if b else b"sell", i, t, source_b)
        for p, q, b, i, t in zip(price_text, qty_text, buys, trade_ids, ts_ms, strict=True)
    ]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_trade(raw: str, **fields: Any) -> Trade | Reject:
    """A validated Trade, or a Reject whose reason names the bad field."""
    try:
        return Trade(**fields)
    except RecordError as exc:
        return Reject(exc.reason, raw)
    except (TypeError, ValueError) as exc:
        return Reject(f"bad field: {exc}", raw)


@dataclass
class Counts:
    trades: int = 0
    rejects: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)


class DeliveryTracker:
    """Counts failed delivery reports; as a producer's own `on_delivery` it costs nothing per
    record (with `delivery.report.only.error` only failures call it)."""

    def __init__(self) -> None:
        self.failed = 0
        self.first_failure = ""

    def on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            if not self.first_failure:
                self.first_failure = str(err)


class Publisher:
    """Produces trades and dead letters through one (idempotent) producer, and counts them.

    Failed deliveries are counted by `tracker`: pass the tracker the producer reports to
    (`make_publisher` builds both); without one, every record carries the callback itself
    (correct, but ~150 ns a record dearer). `flush` raises DeliveryError once any record was
    lost, and keeps raising, so no caller saves a cursor past it.
    """

    def __init__(
        self,
        producer: ProducerLike,
        stage: str,
        topic: str = TRADES,
        dlq_topic: str = DLQ,
        tracker: DeliveryTracker | None = None,
    ) -> None:
        self.producer = producer
        self.stage = stage
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.counts = Counts()
        self._since_poll = 0
        self._stage_key = stage.encode()
        self.tracker = tracker or DeliveryTracker()
        self._per_record = tracker is None

    def _produce(self, topic: str, value: bytes, key: bytes) -> None:
        while True:
            try:
                if self._per_record:
                    self.producer.produce(topic, value, key, on_delivery=self.tracker.on_delivery)
                else:
                    self.producer.produce(topic, value, key)
                break
            except BufferError:  # local queue full: let librdkafka drain it, then retry
                self.producer.poll(0.05)
        self._since_poll += 1
        if self._since_poll >= POLL_EVERY:
            self._since_poll = 0
            self.producer.poll(0)

    def trade(self, trade: Trade) -> None:
        self._produce(self.topic, encode(trade), trade.pair.encode())
        self.counts.trades += 1

    def encoded(self, pair_key: bytes, values: Iterable[bytes]) -> None:
        """Fast path: produce pre-encoded, already validated trades of one pair."""
        produce = self._produce
        n = 0
        for value in values:
            produce(self.topic, value, pair_key)
            n += 1
        self.counts.trades += n

    def reject(self, reason: str, raw: str) -> None:
        """Count, log and dead-letter one bad input; never raises on bad content."""
        reason = reason[:REASON_MAX_CHARS]
        self.counts.rejects += 1
        self.counts.by_reason[reason.split(":", 1)[0]] += 1
        log.warning("%s: rejected (%s): %.200r", self.stage, reason, raw)
        letter = dead_letter(self.stage, reason, raw, now_ms())
        self._produce(self.dlq_topic, encode(letter), self._stage_key)

    def batch(self, batch: Batch) -> None:
        if batch.encoded:
            self.encoded(batch.encoded_key, batch.encoded)
        for trade in batch.trades:
            self.trade(trade)
        for rej in batch.rejects:
            self.reject(rej.reason, rej.raw)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every produced record to be acknowledged; raise DeliveryError naming how
        many were not (failed delivery reports plus records still queued after `timeout_s`)."""
        queued = self.producer.flush(timeout_s)
        failed = self.tracker.failed
        if queued or failed:
            parts = []
            if failed:
                parts.append(f"{failed} failed: {self.tracker.first_failure}")
            if queued:
                parts.append(f"{queued} still queued after {timeout_s} s")
            raise DeliveryError(failed + queued, "; ".join(parts))


def make_publisher(
    settings: Settings,
    stage: str,
    topic: str = TRADES,
    dlq_topic: str = DLQ,
    **producer_overrides: Any,
) -> Publisher:
    """A Publisher on a new producer that reports failed deliveries (only) to its tracker."""
    tracker = DeliveryTracker()
    producer = make_producer(
        settings,
        **producer_overrides,
        on_delivery=tracker.on_delivery,
        **{"delivery.report.only.error": True},
    )
    return Publisher(producer, stage, topic, dlq_topic, tracker)
