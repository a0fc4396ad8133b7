"""Read the final `technical_indicators` rows of one pair and width from the DB (either dialect)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from psycopg import sql

from cryptopred_core.records import IndicatorRow, field_names
from cryptopred_core.tables import TECHNICAL_INDICATORS

#: the `technical_indicators` columns read, in the record's field order
COLUMNS = field_names(IndicatorRow)


def indicator_query(
    pair: str, candle_seconds: int, since_ms: int | None, until_ms: int | None
) -> tuple[sql.Composed, list[Any]]:
    """SELECT of final rows in [since_ms, until_ms), oldest first; plain SQL both dialects run."""
    where = [sql.SQL("pair = %s"), sql.SQL("candle_seconds = %s"), sql.SQL("final")]
    params: list[Any] = [pair, candle_seconds]
    if since_ms is not None:
        where.append(sql.SQL("window_start_ms >= %s"))
        params.append(since_ms)
    if until_ms is not None:
        where.append(sql.SQL("window_start_ms < %s"))
        params.append(until_ms)
    query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY window_start_ms").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS),
        sql.Identifier(TECHNICAL_INDICATORS),
        sql.SQL(" AND ").join(where),
    )
    return query, params


def read_indicator_frame(
    db_url: str,
    pair: str,
    candle_seconds: int,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> pd.DataFrame:
    """The rows as a DataFrame with COLUMNS (NULL indicators become NaN), oldest first.

    A plain psycopg read: one query, no Ray Data start-up (see the report for the timings).
    """
    from cryptopred_core.db import connect

    query, params = indicator_query(pair, candle_seconds, since_ms, until_ms)
    with connect(db_url) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        rows = cur.fetchall()
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    numeric = [c for c in COLUMNS if c not in ("pair", "final")]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    return frame
