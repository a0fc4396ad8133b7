"""Pipeline health: per-stage rates, consumer lag, dead letters, reconnects and Serve latency
from Prometheus (Ray's metrics and the `cryptopred_*` metrics the actors export; Ray's
exporter adds the `ray_` prefix), and freshness and write rates from the tables."""

from __future__ import annotations

from cryptopred.dashboards.grafana import (
    Json,
    bars,
    dashboard,
    override,
    promql,
    row,
    sql,
    stat,
    table,
    timeseries,
)
from cryptopred_core import metric_names as mn
from cryptopred_core import tables

UID = "cryptopred-health"

RATE = "[$__rate_interval]"
HTTP_ROUTES = 'route!~"/-/.*"'  # Serve's own health and routes endpoints


def _streaming() -> list[Json]:
    def per_stage(counter: mn.Metric) -> str:
        return f"sum by (stage) (rate({counter.series}{RATE}))"

    dead = [
        promql(f"sum by (stage) (increase({mn.STREAM_DEAD.series}{RATE}))", "{{stage}}", "A"),
        promql(
            f"sum by (source) (increase({mn.INGEST_REJECTS.series}{RATE}))",
            "ingest {{source}}",
            "B",
        ),
    ]
    return [
        row("Streaming stages (Prometheus)"),
        timeseries(
            "Records consumed / s by stage",
            [promql(per_stage(mn.STREAM_CONSUMED), "{{stage}}")],
            width=8,
            unit="reqps",
        ),
        timeseries(
            "Records produced and rows written / s",
            [
                promql(per_stage(mn.STREAM_PRODUCED), "produced {{stage}}", "A"),
                promql(per_stage(mn.STREAM_ROWS), "rows {{stage}}", "B"),
            ],
            width=8,
            unit="reqps",
        ),
        timeseries(
            "Consumer lag (records behind)",
            [promql(f"max by (stage) ({mn.STREAM_LAG.series})", "{{stage}}")],
            width=8,
            unit="short",
        ),
        timeseries(
            "Event-time delay by stage",
            [
                promql(
                    f"(time() * 1000 - max by (stage) ({mn.STREAM_LAST_EVENT_MS.series})) / 1000",
                    "{{stage}}",
                )
            ],
            width=8,
            unit="s",
            description="Wall time minus the event time of the newest input of each stage.",
        ),
        bars("Dead letters (dlq) per interval", dead, width=8, unit="short"),
        stat(
            "Dead letters in the range",
            [
                promql(
                    f"sum(increase({mn.STREAM_DEAD.series}[$__range])) or vector(0)", "stages", "A"
                ),
                promql(
                    f"sum(increase({mn.INGEST_REJECTS.series}[$__range])) or vector(0)",
                    "ingest",
                    "B",
                ),
            ],
            width=8,
            height=8,
            unit="short",
        ),
    ]


def _ingest() -> list[Json]:
    return [
        row("Ingest (Prometheus)"),
        timeseries(
            "Trades / s by source",
            [promql(f"sum by (source) ({mn.INGEST_TRADES_PER_S.series})", "{{source}}")],
            unit="reqps",
        ),
        bars(
            "Reconnects and repaired gaps per interval",
            [
                promql(
                    f"sum by (source) (increase({mn.INGEST_RECONNECTS.series}{RATE}))",
                    "reconnects {{source}}",
                    "A",
                ),
                promql(
                    f"sum by (source) (increase({mn.INGEST_GAPS_REPAIRED.series}{RATE}))",
                    "gaps repaired {{source}}",
                    "B",
                ),
            ],
            unit="short",
        ),
    ]


def _serving() -> list[Json]:
    def quantile(q: float, metric: mn.Metric, labels: str) -> str:
        return (
            f"histogram_quantile({q}, sum by (le, {labels}) "
            f"(rate({metric.bucket_series}{{{HTTP_ROUTES}}}{RATE})))"
        )

    http = mn.SERVE_HTTP_REQUEST_LATENCY_MS
    processing = mn.SERVE_DEPLOYMENT_PROCESSING_LATENCY_MS.bucket_series
    return [
        row("Serving (Ray Serve metrics)"),
        timeseries(
            "HTTP latency p50 / p99 by route",
            [
                promql(quantile(0.5, http, "route"), "p50 {{route}}", "A"),
                promql(quantile(0.99, http, "route"), "p99 {{route}}", "B"),
            ],
            width=8,
            unit="ms",
        ),
        timeseries(
            "Deployment processing latency p99",
            [
                promql(
                    f"histogram_quantile(0.99, sum by (le, deployment) (rate({processing}{RATE})))",
                    "{{deployment}}",
                )
            ],
            width=8,
            unit="ms",
        ),
        timeseries(
            "HTTP requests and errors / s",
            [
                promql(
                    f"sum by (route) (rate({mn.SERVE_NUM_HTTP_REQUESTS.series}"
                    f"{{{HTTP_ROUTES}}}{RATE}))",
                    "{{route}}",
                    "A",
                ),
                promql(
                    "sum by (route, error_code) "
                    f"(rate({mn.SERVE_NUM_HTTP_ERROR_REQUESTS.series}{RATE}))",
                    "error {{error_code}} {{route}}",
                    "B",
                ),
            ],
            width=8,
            unit="reqps",
        ),
        row("Ray nodes (Prometheus)"),
        timeseries(
            "Node CPU",
            [promql(mn.NODE_CPU_UTILIZATION.series, "{{instance}}")],
            unit="percent",
        ),
        timeseries(
            "Node memory used",
            [promql(mn.NODE_MEM_USED.series, "{{instance}}")],
            unit="bytes",
        ),
    ]


def _tables() -> list[Json]:
    def freshness(name: str, column: str) -> str:
        return f"""SELECT '{name}' AS "table", count(*) AS "rows", max({column}) AS newest_ms,
            ($__to - max({column})) / 1000.0 AS age_s FROM {name}
            WHERE {column} >= $__from AND {column} < $__to"""

    sources = (
        (tables.CANDLES, "window_end_ms"),
        (tables.TECHNICAL_INDICATORS, "window_end_ms"),
        (tables.PREDICTIONS, "created_ms"),
        (tables.PREDICTION_OUTCOMES, "created_ms"),
    )
    union = " UNION ALL ".join(freshness(name, column) for name, column in sources)

    def per_interval(name: str, column: str, where: str = "") -> str:
        return f"""SELECT {column} - {column} % $__interval_ms AS bucket, '{name}' AS metric
            FROM {name} WHERE {column} >= $__from AND {column} < $__to{where}"""

    written = " UNION ALL ".join(
        per_interval(name, column, " AND final" if column == "window_end_ms" else "")
        for name, column in sources
    )
    rates = sql(
        f"""SELECT bucket AS "time", metric, count(*) AS value FROM ({written}) AS w
        GROUP BY bucket, metric ORDER BY "time", metric""",
        fmt="time_series",
    )
    delay = sql(
        f"""SELECT ($__to - max(window_end_ms)) / 1000.0 AS delay_s FROM {tables.CANDLES}
        WHERE final AND window_end_ms >= $__from AND window_end_ms < $__to"""
    )
    checkpoints = sql(
        f"""SELECT group_id, topic, "partition", "offset", updated_ms,
        ($__to - updated_ms) / 1000.0 AS age_s FROM {tables.STREAM_CHECKPOINTS}
        ORDER BY group_id, topic, "partition" """
    )
    return [
        row("Tables"),
        stat("Newest final candle: age", [delay], unit="s", width=6, height=7),
        table(
            "Rows in the range and the newest of each table",
            [sql(union)],
            width=18,
            height=7,
            overrides=[override("newest_ms", unit="dateTimeAsIso")],
        ),
        bars(
            "Rows per interval (final candles and indicators by event time, predictions and "
            "outcomes by write time)",
            [rates],
            width=24,
            unit="short",
            extra={"interval": "1m"},
        ),
        table(
            "Stream checkpoints (candle stage state per partition)",
            [checkpoints],
            width=24,
            height=6,
            overrides=[override("updated_ms", unit="dateTimeAsIso")],
        ),
    ]


def build() -> Json:
    return dashboard(
        UID,
        "cryptopred · Pipeline health",
        [*_streaming(), *_ingest(), *_serving(), *_tables()],
        description="Stage rates, lag, dead letters, reconnects and Serve latency from "
        "Prometheus; freshness and write rates from the tables.",
        time_from="now-1h",
    )
