"""The streaming stages as named, detached, restartable Ray actors.

Each actor runs one StageRunner in a thread from construction on, so when Ray restarts a
killed actor it rejoins its consumer group and resumes from the last safe offset. Ray is
imported only when actors are started or looked up, never at import time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from cryptopred.pipeline.runner import StageRunner
from cryptopred.pipeline.writer import DbWriter
from cryptopred.raycluster import prepare_ray_auth
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_ingest.stream.stages import STAGES, build_stage, group_id, uses_db

log = logging.getLogger(__name__)

METRICS_EVERY_S = 1.0


def actor_name(stage: str, replica: int) -> str:
    return f"stream-{stage}-{replica}"


class StageWorker:
    """Holds one stage and its runner; exports `cryptopred_stream_*` metrics."""

    def __init__(self, stage: str, replica: int, settings_json: str) -> None:
        self.settings = StreamSettings.model_validate_json(settings_json)
        self.stage_name = stage
        self.replica = replica
        self.stop_event = threading.Event()
        writer = (
            DbWriter(self.settings.db_url, self.settings.db_dialect, stop=self.stop_event)
            if uses_db(stage)
            else None
        )
        self.runner = StageRunner(
            self.settings,
            build_stage(stage, self.settings),
            group_id(self.settings, stage),
            writer=writer,
            batch_size=self.settings.stream_batch_size,
            tick_interval_ms=self.settings.tick_interval_ms,
        )
        self.error: str | None = None
        self.done = threading.Event()
        self._metrics = _StageMetrics(stage)
        threading.Thread(target=self._run, name=f"stage-{stage}", daemon=True).start()
        threading.Thread(target=self._export, name="metrics", daemon=True).start()

    def _run(self) -> None:
        try:
            self.runner.run(self.stop_event)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("stage %s failed", self.stage_name)
            raise SystemExit(1) from exc  # let Ray restart the actor
        finally:
            self.done.set()

    def _export(self) -> None:
        while not self.done.wait(METRICS_EVERY_S):
            self._metrics.report(self.runner.stats.as_dict())

    def stats(self) -> dict[str, Any]:
        out = self.runner.stats.as_dict()
        out.update(
            stage=self.stage_name,
            replica=self.replica,
            error=self.error,
            running=not self.done.is_set(),
            pid=os.getpid(),
        )
        return out

    def shutdown(self, timeout_s: float = 30) -> bool:
        self.stop_event.set()
        return self.done.wait(timeout_s)


class _StageMetrics:
    """Counters and gauges through ray.util.metrics (scraped by Prometheus in the cluster)."""

    def __init__(self, stage: str) -> None:
        from ray.util import metrics

        tags = {"stage": stage}
        self.counters = {
            name: metrics.Counter(f"cryptopred_stream_{name}_total", desc, ("stage",))
            for name, desc in (
                ("consumed", "records consumed by a stage"),
                ("produced", "records produced by a stage"),
                ("dead", "records a stage sent to the dlq"),
                ("rows", "rows a stage wrote to the DB"),
            )
        }
        for counter in self.counters.values():
            counter.set_default_tags(tags)
        self.lag = metrics.Gauge("cryptopred_stream_lag", "records behind, per stage", ("stage",))
        self.lag.set_default_tags(tags)
        self.event = metrics.Gauge(
            "cryptopred_stream_last_event_ms", "event time of the latest input", ("stage",)
        )
        self.event.set_default_tags(tags)
        self.reported = dict.fromkeys(self.counters, 0)

    def report(self, stats: dict[str, Any]) -> None:
        for name, counter in self.counters.items():
            delta = int(stats[name]) - self.reported[name]
            if delta > 0:
                counter.inc(delta)
                self.reported[name] += delta
        self.lag.set(float(stats["lag_total"]))
        if stats["last_event_ms"] is not None:
            self.event.set(float(stats["last_event_ms"]))


def _replicas(settings: StreamSettings) -> dict[str, int]:
    counts = {
        "candles": settings.candle_replicas,
        "indicators": settings.indicator_replicas,
        "sink": settings.sink_replicas,
    }
    return {stage: counts[stage] for stage in STAGES}


def connect_ray(settings: StreamSettings) -> Any:
    import ray

    if not ray.is_initialized():
        prepare_ray_auth()
        ray.init(
            address=settings.ray_gcs_address,
            namespace=settings.ray_namespace,
            log_to_driver=False,
            configure_logging=False,
        )
    return ray


def start_pipeline(settings: StreamSettings) -> list[str]:
    """Create (or find) every stage actor; returns their names."""
    ray = connect_ray(settings)
    remote_cls = ray.remote(StageWorker)
    names = []
    for stage, count in _replicas(settings).items():
        for replica in range(count):
            name = actor_name(stage, replica)
            remote_cls.options(  # type: ignore[attr-defined]
                name=name,
                namespace=settings.ray_namespace,
                lifetime="detached",
                get_if_exists=True,
                max_restarts=-1,
                max_task_retries=-1,
                num_cpus=settings.actor_num_cpus,
            ).remote(stage, replica, settings.model_dump_json())
            names.append(name)
    return names


def _find(settings: StreamSettings) -> list[tuple[str, Any]]:
    ray = connect_ray(settings)
    found = []
    for info in ray.util.list_named_actors(all_namespaces=True):
        name = info["name"] if isinstance(info, dict) else info
        namespace = info.get("namespace") if isinstance(info, dict) else settings.ray_namespace
        if namespace == settings.ray_namespace and name.startswith("stream-"):
            found.append((name, ray.get_actor(name, namespace=settings.ray_namespace)))
    return sorted(found)


def pipeline_status(settings: StreamSettings, timeout_s: float = 10) -> list[dict[str, Any]]:
    """Per actor: lag, rates, last event time (or the error that prevents an answer)."""
    ray = connect_ray(settings)
    out = []
    for name, handle in _find(settings):
        try:
            stats = ray.get(handle.stats.remote(), timeout=timeout_s)
        except Exception as exc:
            stats = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0], "running": False}
        out.append({"actor": name, **stats})
    return out


def stop_pipeline(settings: StreamSettings, say: Callable[[str], None] = print) -> list[str]:
    """Stop every stage actor gracefully (leaving consumer groups), then remove it."""
    ray = connect_ray(settings)
    stopped = []
    for name, handle in _find(settings):
        try:
            ray.get(handle.shutdown.remote(), timeout=60)
        except Exception as exc:
            say(f"{name}: graceful stop failed ({type(exc).__name__}); killing it")
        ray.kill(handle, no_restart=True)
        stopped.append(name)
        say(f"stopped {name}")
    time.sleep(0.1)
    return stopped
