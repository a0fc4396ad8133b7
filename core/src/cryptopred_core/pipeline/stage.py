"""What a streaming stage is: logic fed one inbound record at a time, with what it may emit.

A stage never touches Kafka or the clock itself; the runner turns each consumed message into an
Inbound, feeds those and wall time to the stage, ships what it emits, and commits only the
offsets the stage says are safe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from cryptopred_core.pipeline.resume import ResumePoint
from cryptopred_core.records import DeadLetter, R, RecordError, dead_letter, decode, encode


class Inbound(msgspec.Struct, frozen=True, gc=False):
    """One consumed record, free of the transport: where it was read, its key, value and
    timestamp (the broker's, or the wall time it was consumed at when the broker gave none).

    A Struct, not a dataclass: the runner builds one per record, and a Struct is built in C."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


@dataclass
class Emit:
    """What a stage produced while handling messages: records for topics, rows, dead letters."""

    records: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    rows: dict[str, list[msgspec.Struct]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)

    def record(self, topic: str, key: str, record: msgspec.Struct) -> None:
        self.records.append((topic, key.encode(), encode(record)))

    def row(self, table: str, row: msgspec.Struct) -> None:
        self.rows.setdefault(table, []).append(row)

    def dead_letter(
        self,
        stage: str,
        reason: str,
        raw: bytes,
        now_ms: int,
        place: tuple[str, int, int | None] | None = None,
    ) -> None:
        """A dead letter for `raw`, read from `place` (topic, partition, offset)."""
        self.dead.append(dead_letter(stage, reason, raw, now_ms, place))

    def __len__(self) -> int:
        return len(self.records) + sum(len(r) for r in self.rows.values()) + len(self.dead)


class Stage(ABC):
    """Stage logic. `safe_offsets` tells the runner how far each partition may be committed."""

    name: str
    topics: tuple[str, ...]

    @abstractmethod
    def handle(self, message: Inbound, now_ms: int, out: Emit) -> None:
        """Consume one record; emit into `out`. Poison goes to `out.dead_letter` (through
        `decode_or_dead_letter`, the stage's one decode path)."""

    def decode_or_dead_letter(
        self, message: Inbound, kind: type[R], now_ms: int, out: Emit, prefix: str = ""
    ) -> R | None:
        """The record in `message`, or None after sending it to the dlq with its reason."""
        try:
            return decode(message.value, kind)
        except RecordError as exc:
            out.dead_letter(
                self.name,
                f"{prefix}{exc.reason}",
                message.value,
                now_ms,
                (message.topic, message.partition, message.offset),
            )
            return None

    def handle_batch(self, messages: Sequence[Inbound], now_ms: int, out: Emit) -> int:
        """Consume a batch of records in order; returns how many."""
        handle = self.handle
        for message in messages:
            handle(message, now_ms, out)
        return len(messages)

    def tick(self, now_ms: int, out: Emit) -> None:  # noqa: B027 (optional hook)
        """Called regularly with wall time when the input is caught up (also with no message)."""

    def end_batch(self, now_ms: int, out: Emit) -> None:  # noqa: B027 (optional hook)
        """Called once per cycle after the messages and the tick, before shipping."""

    def assign(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], ResumePoint]:
        """Partitions were assigned; return where to start where the stage keeps its own
        resume points (others start from the group's committed offset). The runner revokes
        the partitions whose point no longer fits the topic (see `resume`)."""
        return {}

    @abstractmethod
    def safe_offsets(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> the next offset to resume from after a restart."""

    def revoke(self, partitions: list[tuple[str, int]]) -> None:  # noqa: B027 (optional hook)
        """Forget state fed from partitions this member no longer owns."""

    def last_event_ms(self) -> int | None:
        """Event time of the latest input, for `status`."""
        return None
