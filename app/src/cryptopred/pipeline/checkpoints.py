"""Stage state stored in the DB together with the offset it belongs to.

tansu keeps committed offsets but drops a commit's metadata string, so a stage that must
restore state after a restart (the candle builder) writes `(offset, state)` per partition into
`stream_checkpoints` in the same transaction as its other rows; on assignment it reads them
back and seeks to that offset.
"""

from __future__ import annotations

import psycopg

from cryptopred.db import fetch_all
from cryptopred.db.rows import StreamCheckpoint

__all__ = ["StreamCheckpoint", "load_checkpoints"]


def load_checkpoints(
    conn: psycopg.Connection, group_id: str, topic: str, partitions: list[int]
) -> dict[int, StreamCheckpoint]:
    if not partitions:
        return {}
    rows = fetch_all(
        conn,
        "SELECT * FROM stream_checkpoints WHERE group_id = %s AND topic = %s "
        'AND "partition" = ANY(%s)',
        (group_id, topic, partitions),
    )
    return {int(r["partition"]): StreamCheckpoint(**r) for r in rows}
