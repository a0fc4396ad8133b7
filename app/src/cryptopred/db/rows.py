"""Row types of internal tables (not records on topics)."""

from __future__ import annotations

import msgspec


class StreamCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """One partition's resume point and stage state for one consumer group."""

    group_id: str
    topic: str
    partition: int
    offset: int
    state: str
    updated_ms: int
