"""The stage and source actors record exactly the metrics `cryptopred_core.metric_names` defines,
with the actor's tag, and count what their stats report (real `ray.util.metrics` recorders,
which need no running Ray to be created)."""

from __future__ import annotations

from typing import Any

from cryptopred_core import metric_names as mn
from cryptopred_ingest.actors import _SourceMetrics
from cryptopred_ingest.stream.actors import _StageMetrics


def _recorded(*recorders: Any) -> dict[str, dict[str, str]]:
    return {r.info["name"]: r.info["default_tags"] for r in recorders}


def test_a_stage_records_the_stream_metrics() -> None:
    stage = _StageMetrics("candles")
    recorded = _recorded(*stage.counters.values(), stage.restarts, stage.lag, stage.event)
    stream = {m.name for m in mn.PROJECT_METRICS if m.name.startswith("cryptopred_stream_")}
    assert set(recorded) == stream
    assert all(tags == {"stage": "candles"} for tags in recorded.values())
    stage.report(
        {"consumed": 5, "produced": 3, "dead": 1, "rows": 0, "lag_total": 7, "last_event_ms": None}
    )
    stage.report(
        {"consumed": 8, "produced": 3, "dead": 1, "rows": 2, "lag_total": 0, "last_event_ms": 1_000}
    )
    assert stage.reported == {"consumed": 8, "produced": 3, "dead": 1, "rows": 2}


def test_a_source_records_the_ingest_metrics() -> None:
    source = _SourceMetrics("kraken")
    recorded = _recorded(*source.counters.values(), source.restarts, source.rate)
    ingest = {m.name for m in mn.PROJECT_METRICS if m.name.startswith("cryptopred_ingest_")}
    assert set(recorded) == ingest
    assert all(tags == {"source": "kraken"} for tags in recorded.values())
    source.report({"trades": 10, "reconnects": 1}, elapsed_s=1.0)
    source.report({"trades": 25, "reconnects": 1, "gaps_repaired": 2}, elapsed_s=1.0)
    assert source.reported == {"trades": 25, "rejects": 0, "reconnects": 1, "gaps_repaired": 2}
