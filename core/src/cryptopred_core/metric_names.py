"""Every Prometheus metric the project records, and Ray's own metrics that the dashboards read.

The actors create theirs with `create_metric`; the dashboard builders name each series with
`Metric.series`, the sample name Ray's exporter serves: it prefixes `ray_`, adds `_total` to a
counter whose name does not end in it, and a histogram's samples end in `_bucket` / `_sum` /
`_count`. Ray is imported only when a metric is created.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["counter", "gauge", "histogram"]

RAY_EXPORT_PREFIX = "ray_"


@dataclass(frozen=True)
class Metric:
    name: str  # as given to ray.util.metrics
    kind: Kind
    description: str
    tag_keys: tuple[str, ...] = ()

    @property
    def series(self) -> str:
        """The sample name Prometheus scrapes (a histogram's base name, before `_bucket`)."""
        name = RAY_EXPORT_PREFIX + self.name
        if self.kind == "counter" and not name.endswith("_total"):
            name += "_total"
        return name

    @property
    def bucket_series(self) -> str:
        """A histogram's bucket samples."""
        if self.kind != "histogram":
            raise ValueError(f"{self.name} is a {self.kind}, not a histogram")
        return self.series + "_bucket"


# --- the streaming stages (tag `stage`) ------------------------------------------------------

STREAM_CONSUMED = Metric(
    "cryptopred_stream_consumed_total", "counter", "records consumed by a stage", ("stage",)
)
STREAM_PRODUCED = Metric(
    "cryptopred_stream_produced_total", "counter", "records produced by a stage", ("stage",)
)
STREAM_DEAD = Metric(
    "cryptopred_stream_dead_total", "counter", "records a stage sent to the dlq", ("stage",)
)
STREAM_ROWS = Metric(
    "cryptopred_stream_rows_total", "counter", "rows a stage wrote to the DB", ("stage",)
)
STREAM_RESTARTS = Metric(
    "cryptopred_stream_restarts_total", "counter", "restarts of a stage actor", ("stage",)
)
STREAM_LAG = Metric("cryptopred_stream_lag", "gauge", "records behind, per stage", ("stage",))
STREAM_LAST_EVENT_MS = Metric(
    "cryptopred_stream_last_event_ms", "gauge", "event time of the latest input", ("stage",)
)
# The stage counters by the key of the runner's stats that feeds each one.
STREAM_COUNTERS: Mapping[str, Metric] = {
    "consumed": STREAM_CONSUMED,
    "produced": STREAM_PRODUCED,
    "dead": STREAM_DEAD,
    "rows": STREAM_ROWS,
}

# --- the trade sources (tag `source`) --------------------------------------------------------

INGEST_TRADES = Metric(
    "cryptopred_ingest_trades_total", "counter", "trades of a trade source", ("source",)
)
INGEST_REJECTS = Metric(
    "cryptopred_ingest_rejects_total", "counter", "rejects of a trade source", ("source",)
)
INGEST_RECONNECTS = Metric(
    "cryptopred_ingest_reconnects_total", "counter", "reconnects of a trade source", ("source",)
)
INGEST_GAPS_REPAIRED = Metric(
    "cryptopred_ingest_gaps_repaired_total",
    "counter",
    "gaps_repaired of a trade source",
    ("source",),
)
INGEST_RESTARTS = Metric(
    "cryptopred_ingest_restarts_total", "counter", "restarts of a trade source actor", ("source",)
)
INGEST_TRADES_PER_S = Metric("cryptopred_ingest_trades_per_s", "gauge", "trades/s", ("source",))
# The source counters by the key of the source's stats that feeds each one.
INGEST_COUNTERS: Mapping[str, Metric] = {
    "trades": INGEST_TRADES,
    "rejects": INGEST_REJECTS,
    "reconnects": INGEST_RECONNECTS,
    "gaps_repaired": INGEST_GAPS_REPAIRED,
}

PROJECT_METRICS: tuple[Metric, ...] = (
    *STREAM_COUNTERS.values(),
    STREAM_RESTARTS,
    STREAM_LAG,
    STREAM_LAST_EVENT_MS,
    *INGEST_COUNTERS.values(),
    INGEST_RESTARTS,
    INGEST_TRADES_PER_S,
)

# --- Ray's own metrics (Serve and the node agent) that the dashboards read -------------------

SERVE_HTTP_REQUEST_LATENCY_MS = Metric(
    "serve_http_request_latency_ms", "histogram", "end-to-end latency of HTTP requests"
)
SERVE_DEPLOYMENT_PROCESSING_LATENCY_MS = Metric(
    "serve_deployment_processing_latency_ms", "histogram", "latency of a replica's handler"
)
SERVE_NUM_HTTP_REQUESTS = Metric("serve_num_http_requests", "counter", "HTTP requests")
SERVE_NUM_HTTP_ERROR_REQUESTS = Metric(
    "serve_num_http_error_requests", "counter", "errored HTTP responses"
)
NODE_CPU_UTILIZATION = Metric("node_cpu_utilization", "gauge", "CPU use of a node, percent")
NODE_MEM_USED = Metric("node_mem_used", "gauge", "memory used on a node, bytes")

RAY_METRICS: tuple[Metric, ...] = (
    SERVE_HTTP_REQUEST_LATENCY_MS,
    SERVE_DEPLOYMENT_PROCESSING_LATENCY_MS,
    SERVE_NUM_HTTP_REQUESTS,
    SERVE_NUM_HTTP_ERROR_REQUESTS,
    NODE_CPU_UTILIZATION,
    NODE_MEM_USED,
)


def create_metric(metric: Metric, tags: Mapping[str, str]) -> Any:
    """The `ray.util.metrics` recorder of one of the project's counters or gauges, with `tags`
    as its default tags."""
    from ray.util import metrics

    recorder: Any
    if metric.kind == "counter":
        recorder = metrics.Counter(metric.name, metric.description, metric.tag_keys)
    elif metric.kind == "gauge":
        recorder = metrics.Gauge(metric.name, metric.description, metric.tag_keys)
    else:
        raise ValueError(f"{metric.name}: the project records no histograms")
    recorder.set_default_tags(dict(tags))
    return recorder
