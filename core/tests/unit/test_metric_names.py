"""The metric names module: one definition per name, the exporter's naming rule, and the
`ray.util.metrics` recorders it creates (real ones; creating them needs no running Ray)."""

from __future__ import annotations

import pytest
from ray.util import metrics

from cryptopred_core import metric_names as mn


def test_names_are_unique_and_the_projects_are_prefixed() -> None:
    names = [m.name for m in (*mn.PROJECT_METRICS, *mn.RAY_METRICS)]
    assert len(names) == len(set(names))
    assert all(m.name.startswith("cryptopred_") for m in mn.PROJECT_METRICS)
    assert set(mn.STREAM_COUNTERS.values()) | set(mn.INGEST_COUNTERS.values()) <= set(
        mn.PROJECT_METRICS
    )


def test_series_follow_the_exporters_rule() -> None:
    assert mn.STREAM_DEAD.series == "ray_cryptopred_stream_dead_total"
    assert mn.STREAM_LAG.series == "ray_cryptopred_stream_lag"
    assert mn.SERVE_NUM_HTTP_REQUESTS.series == "ray_serve_num_http_requests_total"
    assert (
        mn.SERVE_HTTP_REQUEST_LATENCY_MS.bucket_series == "ray_serve_http_request_latency_ms_bucket"
    )
    with pytest.raises(ValueError, match="not a histogram"):
        _ = mn.STREAM_LAG.bucket_series


def test_create_metric_makes_the_recorder_of_its_kind_with_default_tags() -> None:
    counter = mn.create_metric(mn.STREAM_CONSUMED, {"stage": "candles"})
    gauge = mn.create_metric(mn.INGEST_TRADES_PER_S, {"source": "kraken"})
    assert isinstance(counter, metrics.Counter)
    assert isinstance(gauge, metrics.Gauge)
    assert counter.info["name"] == "cryptopred_stream_consumed_total"
    assert counter.info["tag_keys"] == ("stage",)
    assert counter.info["default_tags"] == {"stage": "candles"}
    assert gauge.info["default_tags"] == {"source": "kraken"}
    with pytest.raises(ValueError, match="no histograms"):
        mn.create_metric(mn.SERVE_HTTP_REQUEST_LATENCY_MS, {})
