"""Whether a resume point a stage saved in the DB still belongs to the topic it reads.

A stage that keeps its own resume points (the candle stage: builder state with the offset
after it) outlives the broker's topics when those go: the embedded broker keeps them in memory,
so after `make down && make up` `trades` starts again at offset 0 while the DB still says
"resume at 546488". Read from there, the stage would wait for records that never come (the
topic has fewer) or skip the new topic's beginning (it has more). The point is stale when the
topic holds no record just before its offset, or when that record was written after the point
was saved: it cannot be the one the stage had read. (tansu 0.6 under-reports a partition's high
watermark, so the end of the topic is found by fetching, not from ListOffsets.)
"""

from __future__ import annotations

from dataclasses import dataclass

#: producers and stages run on different hosts in a cluster; their clocks may differ this much
CLOCK_SKEW_MS = 5_000


@dataclass(frozen=True)
class ResumePoint:
    """The next offset a stage reads in one partition, and when it saved that."""

    offset: int
    saved_ms: int


def stale_reason(point: ResumePoint, found: bool, previous_ts_ms: int | None) -> str | None:
    """Why `point` cannot resume its partition as the partition is now (None when it can).

    `found`: whether the partition holds a record at `point.offset - 1`; `previous_ts_ms`: that
    record's broker timestamp (None when it has none). A point at offset 0 always fits.
    """
    if point.offset == 0:
        return None
    if not found:
        return (
            f"the topic holds no record at offset {point.offset - 1}: it was recreated "
            "(e.g. the in-memory broker restarted)"
        )
    if previous_ts_ms is not None and previous_ts_ms > point.saved_ms + CLOCK_SKEW_MS:
        return (
            f"the record at offset {point.offset - 1} was written at {previous_ts_ms}, after the "
            f"point was saved at {point.saved_ms}: the topic was recreated"
        )
    return None
