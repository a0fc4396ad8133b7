"""An in-memory producer for unit tests."""

from __future__ import annotations

from typing import Any


class MemoryProducer:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []
        self.polls = 0

    def produce(
        self,
        topic: str,
        value: str | bytes | None = None,
        key: str | bytes | None = None,
        on_delivery: Any = None,
    ) -> None:
        assert isinstance(value, bytes) and isinstance(key, bytes)
        self.records.append((topic, value, key))

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    def topic(self, name: str) -> list[tuple[bytes, bytes]]:
        return [(k, v) for t, v, k in self.records if t == name]
