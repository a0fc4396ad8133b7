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


class StreamPairState(msgspec.Struct, frozen=True, kw_only=True):
    """One pair's candle builder state for one consumer group (written only when it changed).

    `partition` is the partition the pair's trades come from; the partition's resume offset is
    in `stream_checkpoints`, written in the same transaction.
    """

    group_id: str
    topic: str
    pair: str
    partition: int
    state: str
    updated_ms: int


class SourceWatermark(msgspec.Struct, frozen=True, kw_only=True):
    """A live source's promise: every trade of `pair` with ts_ms <= `through_ms` is in `trades`.

    The candle stage closes an idle pair's windows only up to this time, so trades that a
    source is still repairing (after a silence or a jump in trade ids) land in their candles.
    """

    source: str
    pair: str
    through_ms: int
    updated_ms: int
