"""Read-side SQL of the API: parameterised, and valid in both dialects (postgres, risingwave)."""

from __future__ import annotations

from typing import Any

import psycopg

from cryptopred_core.db import fetch_all
from cryptopred_core.records import IndicatorRow, field_names

_INDICATOR_COLUMNS = ", ".join(f'"{c}"' for c in field_names(IndicatorRow))


def latest_prediction(
    conn: psycopg.Connection, pair: str, candle_seconds: int, horizon_seconds: int
) -> dict[str, Any] | None:
    rows = fetch_all(
        conn,
        "SELECT * FROM predictions WHERE pair = %s AND candle_seconds = %s "
        "AND horizon_seconds = %s ORDER BY window_end_ms DESC, created_ms DESC LIMIT 1",
        (pair, candle_seconds, horizon_seconds),
    )
    return rows[0] if rows else None


def prediction_history(
    conn: psycopg.Connection, pair: str, candle_seconds: int, limit: int
) -> list[dict[str, Any]]:
    return fetch_all(
        conn,
        "SELECT * FROM predictions WHERE pair = %s AND candle_seconds = %s "
        "ORDER BY window_end_ms DESC, horizon_seconds, created_ms DESC LIMIT %s",
        (pair, candle_seconds, limit),
    )


def live_metrics(conn: psycopg.Connection, pair: str, since_ms: int) -> list[dict[str, Any]]:
    """Per model version and horizon: live MAE beside persistence's, hit rates, count, mean
    pinball loss, and the sums of its and the baseline's pinball losses over the outcomes that
    have both (`paired_*`, for the skill)."""
    return fetch_all(
        conn,
        "SELECT model_name, model_version, horizon_seconds, count(*) AS n, "
        "avg(abs_error) AS mae, avg(persistence_abs_error) AS persistence_mae, "
        "avg(CASE WHEN direction_hit THEN 1.0 ELSE 0.0 END) AS direction_accuracy, "
        "avg(CASE WHEN interval_hit THEN 1.0 ELSE 0.0 END) AS interval_coverage, "
        "avg(pinball_loss) AS pinball_loss, "
        "avg(CASE WHEN pinball_loss IS NOT NULL THEN baseline_pinball_loss END) "
        "AS baseline_pinball_loss, "
        "count(CASE WHEN pinball_loss IS NOT NULL THEN baseline_pinball_loss END) AS paired_n, "
        "sum(CASE WHEN baseline_pinball_loss IS NOT NULL THEN pinball_loss END) "
        "AS paired_pinball_sum, "
        "sum(CASE WHEN pinball_loss IS NOT NULL THEN baseline_pinball_loss END) "
        "AS paired_baseline_sum "
        "FROM prediction_outcomes WHERE pair = %s AND target_ts_ms >= %s "
        "GROUP BY model_name, model_version, horizon_seconds "
        "ORDER BY model_name, model_version, horizon_seconds",
        (pair, since_ms),
    )


def recent_indicator_rows(
    conn: psycopg.Connection, pair: str, candle_seconds: int, limit: int
) -> list[dict[str, Any]]:
    """The last `limit` final indicator rows, oldest first."""
    rows = fetch_all(
        conn,
        f"SELECT {_INDICATOR_COLUMNS} FROM technical_indicators "
        "WHERE pair = %s AND candle_seconds = %s AND final "
        "ORDER BY window_start_ms DESC LIMIT %s",
        (pair, candle_seconds, limit),
    )
    return rows[::-1]


def candle_close(
    conn: psycopg.Connection, pair: str, candle_seconds: int, window_end_ms: int
) -> float | None:
    """Close of the final candle that ends at `window_end_ms`."""
    rows = fetch_all(
        conn,
        "SELECT close FROM technical_indicators WHERE pair = %s AND candle_seconds = %s "
        "AND window_end_ms = %s AND final",
        (pair, candle_seconds, window_end_ms),
    )
    return float(rows[0]["close"]) if rows else None


def predictions_targeting(
    conn: psycopg.Connection, pair: str, candle_seconds: int, target_ts_ms: int
) -> list[dict[str, Any]]:
    return fetch_all(
        conn,
        "SELECT * FROM predictions WHERE pair = %s AND candle_seconds = %s AND target_ts_ms = %s",
        (pair, candle_seconds, target_ts_ms),
    )


def chart_rows(
    conn: psycopg.Connection,
    pair: str,
    candle_seconds: int,
    limit: int,
    horizon_seconds: int | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Recent candles (oldest first) and the predictions made over them: those of one horizon,
    or of every horizon when `horizon_seconds` is None."""
    candles = fetch_all(
        conn,
        "SELECT window_start_ms, window_end_ms, open, high, low, close, volume, final "
        "FROM candles WHERE pair = %s AND candle_seconds = %s "
        "ORDER BY window_start_ms DESC LIMIT %s",
        (pair, candle_seconds, limit),
    )[::-1]
    since = candles[0]["window_start_ms"] if candles else 0
    one_horizon = "" if horizon_seconds is None else "AND horizon_seconds = %s "
    params = (pair, candle_seconds, since) + (() if horizon_seconds is None else (horizon_seconds,))
    predictions = fetch_all(
        conn,
        "SELECT horizon_seconds, window_end_ms, target_ts_ms, predicted_close, lower, upper, "
        "model_version FROM predictions WHERE pair = %s AND candle_seconds = %s "
        f"AND window_end_ms >= %s {one_horizon}ORDER BY target_ts_ms",
        params,
    )
    return candles, predictions


def last_prediction_window(conn: psycopg.Connection, pair: str, candle_seconds: int) -> int:
    """window_end_ms of the latest prediction of a series; -1 when it has none."""
    rows = fetch_all(
        conn,
        "SELECT max(window_end_ms) AS last FROM predictions "
        "WHERE pair = %s AND candle_seconds = %s",
        (pair, candle_seconds),
    )
    last = rows[0]["last"] if rows else None
    return int(last) if last is not None else -1
