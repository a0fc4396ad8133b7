"""Predictions: predicted vs realised per horizon with the 80 % interval, and live accuracy
per model version beside persistence (tables predictions, prediction_outcomes, candles)."""

from __future__ import annotations

from cryptopred.dashboards.grafana import (
    Json,
    dashboard,
    field_stat,
    override,
    query_variable,
    row,
    sql,
    table,
    timeseries,
)
from cryptopred_core import tables

UID = "cryptopred-predictions"

PREDICTIONS, OUTCOMES = tables.PREDICTIONS, tables.PREDICTION_OUTCOMES

PAIR = query_variable("pair", "Pair", f"SELECT DISTINCT pair FROM {PREDICTIONS} ORDER BY pair")
CANDLE_SECONDS = query_variable(
    "candle_seconds",
    "Candle (s)",
    f"SELECT DISTINCT candle_seconds FROM {PREDICTIONS} WHERE pair = '$pair' "
    "ORDER BY candle_seconds",
)
HORIZON = query_variable(
    "horizon",
    "Horizon (s)",
    f"""SELECT DISTINCT horizon_seconds FROM {PREDICTIONS}
    WHERE pair = '$pair' AND candle_seconds = $candle_seconds ORDER BY horizon_seconds""",
    multi=True,
    include_all=True,
)
MODEL_VERSION = query_variable(
    "model_version",
    "Model version",
    f"""SELECT model_version FROM {PREDICTIONS}
    WHERE pair = '$pair' AND candle_seconds = $candle_seconds
    GROUP BY model_version ORDER BY max(created_ms) DESC""",
)

SERIES = "pair = '$pair' AND candle_seconds = $candle_seconds"
HORIZONS = "CAST(horizon_seconds AS VARCHAR) IN ($horizon)"  # a multi-value text list
SCORED = f"{SERIES} AND {HORIZONS} AND target_ts_ms >= $__from AND target_ts_ms < $__to"
HIT_RATE = "avg(CASE WHEN {} THEN 1.0 ELSE 0.0 END)"
# 1 - pinball / the baseline's pinball, over the outcomes scored against a baseline
BASELINE_SKILL = (
    "1 - sum(CASE WHEN baseline_pinball_loss IS NOT NULL THEN pinball_loss END) / "
    "NULLIF(sum(CASE WHEN pinball_loss IS NOT NULL THEN baseline_pinball_loss END), 0)"
)
TIME_COLUMNS = ("window_end_ms", "target_ts_ms")


def _predicted_vs_realised() -> Json:
    predicted = sql(
        f"""SELECT target_ts_ms AS "time", predicted_close AS predicted,
        lower AS "lower 10 %", upper AS "upper 90 %" FROM {PREDICTIONS}
        WHERE {SERIES} AND {HORIZONS} AND model_version = '$model_version'
        AND target_ts_ms >= $__from AND target_ts_ms < $__to ORDER BY target_ts_ms""",
        ref="A",
        fmt="time_series",
    )
    realised = sql(
        f"""SELECT window_end_ms AS "time", close AS realised FROM {tables.CANDLES}
        WHERE {SERIES} AND final AND window_end_ms >= $__from AND window_end_ms < $__to
        ORDER BY window_end_ms""",
        ref="B",
        fmt="time_series",
    )
    bound = {"custom.lineWidth": 0, "custom.fillOpacity": 15}
    return timeseries(
        "Horizon ${horizon} s: predicted vs realised (model v${model_version})",
        [predicted, realised],
        width=12,
        height=9,
        description="Predictions at their target time with the 10-90 % interval, and the "
        "realised close of the candle ending then. One panel per selected horizon.",
        overrides=[
            override("upper 90 %", **{"custom.fillBelowTo": "lower 10 %", **bound}),
            override("lower 10 %", **bound),
            override("realised", **{"custom.lineWidth": 2}),
        ],
        extra={"repeat": "horizon", "repeatDirection": "h", "maxPerRow": 2},
    )


def _accuracy_table() -> Json:
    query = sql(
        f"""SELECT model_name, model_version, horizon_seconds, count(*) AS n,
        avg(abs_error) AS mae, avg(persistence_abs_error) AS persistence_mae,
        1 - avg(abs_error) / NULLIF(avg(persistence_abs_error), 0) AS skill,
        {HIT_RATE.format("direction_hit")} AS direction_accuracy,
        {HIT_RATE.format("interval_hit")} AS interval_coverage,
        avg(pinball_loss) AS pinball_loss,
        avg(CASE WHEN pinball_loss IS NOT NULL THEN baseline_pinball_loss END)
          AS baseline_pinball_loss,
        {BASELINE_SKILL} AS skill_vs_baseline
        FROM {OUTCOMES} WHERE {SCORED}
        GROUP BY model_name, model_version, horizon_seconds
        ORDER BY model_name, model_version, horizon_seconds"""
    )
    return table(
        "Live MAE per model version beside persistence",
        [query],
        width=24,
        height=7,
        description="Scored outcomes with their target time in the range. skill = 1 - MAE / "
        "persistence MAE (> 0: the model beats persistence). Coverage should be near 0.8. "
        "skill_vs_baseline = 1 - pinball loss / the baseline version's pinball loss on the "
        "same windows (empty when the version is the baseline).",
        overrides=[
            override("skill", unit="percentunit"),
            override("skill_vs_baseline", unit="percentunit"),
            override("direction_accuracy", unit="percentunit"),
            override("interval_coverage", unit="percentunit"),
        ],
    )


def _mae_over_time() -> Json:
    bucket = "target_ts_ms - target_ts_ms % $__interval_ms"
    scored = f"""SELECT {bucket} AS bucket, horizon_seconds, model_version, abs_error,
        persistence_abs_error FROM {OUTCOMES} WHERE {SCORED}"""
    query = sql(
        f"""SELECT bucket AS "time", metric, value FROM (
          SELECT bucket, CONCAT('h', CAST(horizon_seconds AS VARCHAR), ' model v', model_version)
            AS metric, avg(abs_error) AS value
          FROM ({scored}) AS s GROUP BY bucket, horizon_seconds, model_version
          UNION ALL
          SELECT bucket, CONCAT('h', CAST(horizon_seconds AS VARCHAR), ' persistence') AS metric,
            avg(persistence_abs_error) AS value
          FROM ({scored}) AS p GROUP BY bucket, horizon_seconds
        ) AS m ORDER BY "time", metric""",
        fmt="time_series",
    )
    return timeseries(
        "MAE over time: each model version and persistence, per horizon",
        [query],
        width=24,
        extra={"interval": "1m"},
    )


def _calibration_over_time() -> Json:
    bucket = "target_ts_ms - target_ts_ms % $__interval_ms"
    metric = "CONCAT('h', CAST(horizon_seconds AS VARCHAR), ' model v', model_version, '{}')"
    scored = f"""SELECT {bucket} AS bucket, horizon_seconds, model_version, interval_hit,
        pinball_loss, baseline_pinball_loss FROM {OUTCOMES} WHERE {SCORED}"""
    query = sql(
        f"""SELECT bucket AS "time", metric, value FROM (
          SELECT bucket, {metric.format(" coverage")} AS metric,
            {HIT_RATE.format("interval_hit")} AS value
          FROM ({scored}) AS c GROUP BY bucket, horizon_seconds, model_version
          UNION ALL
          SELECT bucket, {metric.format(" skill vs baseline")} AS metric,
            {BASELINE_SKILL} AS value
          FROM ({scored}) AS k GROUP BY bucket, horizon_seconds, model_version
        ) AS m WHERE value IS NOT NULL ORDER BY "time", metric""",
        fmt="time_series",
    )
    return timeseries(
        "80 % interval coverage and skill vs the baseline over time, per version and horizon",
        [query],
        width=24,
        unit="percentunit",
        description="Coverage should stay near 0.8: the serving monitor demotes a champion "
        "whose rolling coverage stays outside CRYPTOPRED_DEMOTION_COVERAGE_LOW-HIGH for "
        "CRYPTOPRED_DEMOTION_AFTER_S, or whose skill vs the baseline is significantly negative.",
        extra={"interval": "5m"},
    )


def _stats() -> list[Json]:
    version = f"{SCORED} AND model_version = '$model_version'"
    rates = f"""SELECT count(*) AS scored,
        {HIT_RATE.format("direction_hit")} AS direction_accuracy,
        {HIT_RATE.format("interval_hit")} AS interval_coverage,
        1 - avg(abs_error) / NULLIF(avg(persistence_abs_error), 0) AS skill,
        {BASELINE_SKILL} AS skill_vs_baseline
        FROM {OUTCOMES} WHERE {version}"""

    def one(title: str, field: str, unit: str, width: int = 5) -> Json:
        return field_stat(title, sql(rates), field, unit, width=width)

    return [
        one("Scored predictions (v$model_version)", "scored", "short", width=4),
        one("Skill vs persistence (MAE)", "skill", "percentunit"),
        one("Skill vs baseline (pinball)", "skill_vs_baseline", "percentunit"),
        one("Direction accuracy", "direction_accuracy", "percentunit"),
        one("Interval coverage (target 80 %)", "interval_coverage", "percentunit"),
    ]


def _latest() -> Json:
    query = sql(
        f"""SELECT window_end_ms, target_ts_ms, horizon_seconds, predicted_close, lower, upper,
        predicted_return, model_version FROM {PREDICTIONS}
        WHERE {SERIES} AND window_end_ms >= $__from AND window_end_ms < $__to
        ORDER BY window_end_ms DESC, horizon_seconds LIMIT 50"""
    )
    return table(
        "Latest predictions",
        [query],
        width=24,
        overrides=[override(c, unit="dateTimeAsIso") for c in TIME_COLUMNS],
    )


def build() -> Json:
    panels = [
        row("Predicted vs realised"),
        _predicted_vs_realised(),
        row("Live accuracy"),
        *_stats(),
        _accuracy_table(),
        _calibration_over_time(),
        _mae_over_time(),
        _latest(),
    ]
    return dashboard(
        UID,
        "cryptopred · Predictions",
        panels,
        variables=[PAIR, CANDLE_SECONDS, HORIZON, MODEL_VERSION],
        description="Served predictions against realised prices, and online evaluation.",
    )
