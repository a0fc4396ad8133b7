"""Which Prometheus series the dashboards can read, as Ray's exporter names them.

The project's series: every metric of `cryptopred_core.metric_names` registered with Ray's own
OpenTelemetry recorder, the one the Ray metrics agent serves to Prometheus, and the sample names
it exposes read back (with Ray's `ray_` prefix and the `_total` / `_bucket` / `_sum` / `_count`
suffixes). Ray's series: the metric names the PromQL of Ray's own Grafana dashboards selects
(Serve, and the default one with the node gauges).

`python -m cryptopred.dashboards.metrics` prints them as JSON; it sets up OpenTelemetry's
global state, so tests call it in a subprocess. Nothing here starts Ray.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import asdict

from cryptopred.dashboards.targets import promql_metric_names
from cryptopred_core.metric_names import PROJECT_METRICS, Metric

PROBE_TAGS = {"probe": "1"}


def exposed_series(metrics: Iterable[Metric]) -> dict[str, str]:
    """Sample name -> the metric it belongs to, as Ray's Prometheus endpoint names them.

    Registers the metrics with Ray's OpenTelemetry recorder in this process (global
    OpenTelemetry and prometheus_client state: call it in a process of its own).
    """
    from prometheus_client import REGISTRY, generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from ray._private.telemetry.open_telemetry_metric_recorder import (
        OpenTelemetryMetricRecorder,
    )

    recorder = OpenTelemetryMetricRecorder()
    name_of: dict[str, str] = {}
    for metric in metrics:
        if metric.kind == "counter":
            recorder.register_counter_metric(metric.name, metric.description)
            recorder.set_metric_value(metric.name, PROBE_TAGS, 1.0)
        elif metric.kind == "gauge":
            recorder.register_gauge_metric(metric.name, metric.description)
            recorder.set_metric_value(metric.name, PROBE_TAGS, 1.0)
        else:
            recorder.register_histogram_metric(metric.name, metric.description, [1.0])
            batch = [{"tags": PROBE_TAGS, "bucket_counts": [1, 0]}]
            recorder.record_histogram_aggregated_batch(metric.name, batch)
        base = "ray_" + re.sub(r"[^a-zA-Z0-9_:]", "_", metric.name)
        for suffix in ("", "_total", "_bucket", "_sum", "_count"):
            name_of.setdefault(base + suffix, metric.name)
    text = generate_latest(REGISTRY).decode()
    out: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in name_of:  # not the process's own python_* / process_* series
                out[sample.name] = name_of[sample.name]
    return out


def ray_dashboard_series() -> dict[str, str]:
    """Series name -> the Ray dashboard whose PromQL selects it."""
    from ray.dashboard.modules.metrics.dashboards.default_dashboard_panels import (
        default_dashboard_config,
    )
    from ray.dashboard.modules.metrics.dashboards.serve_dashboard_panels import (
        serve_dashboard_config,
    )

    out: dict[str, str] = {}
    for config in (default_dashboard_config, serve_dashboard_config):
        panels = [*config.panels, *(p for row in config.rows for p in row.panels)]
        for panel in panels:
            for target in panel.targets:
                for name in promql_metric_names(target.expr):
                    out.setdefault(name, f"ray dashboard {config.name}")
    return out


def main() -> int:
    report = {
        "project": [asdict(m) for m in PROJECT_METRICS],
        "series": {**ray_dashboard_series(), **exposed_series(PROJECT_METRICS)},
    }
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
