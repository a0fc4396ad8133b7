"""Stage state stored in the DB together with the offset it belongs to.

tansu keeps committed offsets but drops a commit's metadata string, so a stage that must
restore state after a restart (the candle builder) writes `(offset, state)` per partition into
`stream_checkpoints` in the same transaction as its other rows; on assignment it reads them
back and seeks to that offset. The candle builder keeps each pair's state in its own row of
`stream_pair_states` (written only when it changed), beside its partition's row.
`source_watermarks` says how far live sources have put every trade of a pair into `trades`.
"""

from __future__ import annotations

import psycopg

from cryptopred_core.db import fetch_all
from cryptopred_core.db.rows import SourceWatermark, StreamCheckpoint, StreamPairState

__all__ = [
    "StreamCheckpoint",
    "StreamPairState",
    "load_checkpoints",
    "load_pair_state",
    "load_pair_states",
    "load_source_watermarks",
]


def load_checkpoints(
    conn: psycopg.Connection, group_id: str, topic: str, partitions: list[int]
) -> dict[int, StreamCheckpoint]:
    """The partition rows of `group_id` for `partitions` of `topic`, by partition."""
    if not partitions:
        return {}
    rows = fetch_all(
        conn,
        "SELECT * FROM stream_checkpoints WHERE group_id = %s AND topic = %s "
        'AND "partition" = ANY(%s)',
        (group_id, topic, partitions),
    )
    return {int(r["partition"]): StreamCheckpoint(**r) for r in rows}


def load_pair_states(
    conn: psycopg.Connection, group_id: str, topic: str, partitions: list[int]
) -> list[StreamPairState]:
    """The pair rows of `group_id` whose pairs are read from `partitions` of `topic`."""
    if not partitions:
        return []
    rows = fetch_all(
        conn,
        "SELECT * FROM stream_pair_states WHERE group_id = %s AND topic = %s "
        'AND "partition" = ANY(%s)',
        (group_id, topic, partitions),
    )
    return [StreamPairState(**r) for r in rows]


def load_pair_state(
    conn: psycopg.Connection, group_id: str, topic: str, pair: str
) -> StreamPairState | None:
    """One pair's row, or None when it has none."""
    rows = fetch_all(
        conn,
        "SELECT * FROM stream_pair_states WHERE group_id = %s AND topic = %s AND pair = %s",
        (group_id, topic, pair),
    )
    return StreamPairState(**rows[0]) if rows else None


def load_source_watermarks(conn: psycopg.Connection) -> list[SourceWatermark]:
    """Every row of `source_watermarks`."""
    rows = fetch_all(conn, "SELECT source, pair, through_ms, updated_ms FROM source_watermarks")
    return [SourceWatermark(**r) for r in rows]
