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

from cryptopred_core.metric_names import (
    STREAM_COUNTERS,
    STREAM_LAG,
    STREAM_LAST_EVENT_MS,
    STREAM_RESTARTS,
    create_metric,
)
from cryptopred_core.pipeline.runner import RunnerStats, StageRunner
from cryptopred_core.pipeline.writer import DbWriter
from cryptopred_core.raycluster import connect_ray, one_unit_of
from cryptopred_core.supervision import crash_record, ray_supervisor
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_ingest.stream.stages import STAGES, build_stage, group_id, uses_db

log = logging.getLogger(__name__)

METRICS_EVERY_S = 1.0


def actor_name(stage: str, replica: int) -> str:
    return f"stream-{stage}-{replica}"


def supervision_key(settings: StreamSettings, stage: str, replica: int) -> str:
    """Key of a stage actor's crash record (see `cryptopred_core.supervision`)."""
    return f"{settings.ray_namespace}/{actor_name(stage, replica)}"


class FaultHooksDisabledError(PermissionError):
    """A fault was injected while the `fault_hooks` setting is off."""


class StageWorker:
    """Holds one stage and its runner; exports `cryptopred_stream_*` metrics.

    A failure of the stage ends the actor's process (`Supervisor.fail`), so Ray restarts it;
    a restarted actor first waits its crash-loop backoff, then builds its runner afresh.
    """

    def __init__(self, stage: str, replica: int, settings_json: str) -> None:
        self.settings = StreamSettings.model_validate_json(settings_json)
        self.stage_name = stage
        self.replica = replica
        self.stop_event = threading.Event()
        self.supervisor = ray_supervisor(
            supervision_key(self.settings, stage, replica), self.settings.crash_backoff_max_s
        )
        self.runner: StageRunner | None = None
        self.state = "backoff" if self.supervisor.backoff_s() > 0 else "starting"
        self.done = threading.Event()
        self._metrics = _StageMetrics(stage)
        if self.supervisor.restarted:
            self._metrics.restarts.inc(1)
        threading.Thread(target=self._run, name=f"stage-{stage}", daemon=True).start()
        threading.Thread(target=self._export, name="metrics", daemon=True).start()

    def _build_runner(self) -> StageRunner:
        writer = (
            DbWriter.from_settings(self.settings, stop=self.stop_event)
            if uses_db(self.stage_name)
            else None
        )
        return StageRunner(
            self.settings,
            build_stage(self.stage_name, self.settings),
            group_id(self.settings, self.stage_name),
            writer=writer,
            batch_size=self.settings.stream_batch_size,
            tick_interval_ms=self.settings.tick_interval_ms,
        )

    def _run(self) -> None:
        try:
            if self.supervisor.wait_backoff(self.stop_event):
                self.runner = self._build_runner()
                self.state = "running"
                self.runner.run(self.stop_event)
            self.state = "stopped"
        except Exception as exc:
            self.state = "failed"
            self.supervisor.fail(f"stage {actor_name(self.stage_name, self.replica)}", exc)
        finally:
            self.done.set()

    def _export(self) -> None:
        while not self.done.wait(METRICS_EVERY_S):
            if self.runner is not None:
                self._metrics.report(self.runner.stats.as_dict())
                self.supervisor.note_healthy()

    def inject_fault(self, message: str) -> None:
        """Tests only (setting `fault_hooks`): the running stage raises `message` at its next
        cycle, inside the stage thread, as a bug of its own would."""
        if not self.settings.fault_hooks:
            raise FaultHooksDisabledError("fault hooks are off (CRYPTOPRED_FAULT_HOOKS)")
        if self.runner is None:
            raise RuntimeError(f"stage {self.stage_name} is not running yet ({self.state})")
        self.runner.inject_fault(message)

    def stats(self) -> dict[str, Any]:
        out = (self.runner.stats if self.runner is not None else RunnerStats()).as_dict()
        record = self.supervisor.record
        out.update(
            stage=self.stage_name,
            replica=self.replica,
            state=self.state,
            running=not self.done.is_set(),
            pid=os.getpid(),
            restarts=record.restarts,
            last_error=record.last_error,
            last_error_ms=record.last_error_ms,
            error=None,
        )
        return out

    def shutdown(self, timeout_s: float = 30) -> bool:
        self.stop_event.set()
        return self.done.wait(timeout_s)


class _StageMetrics:
    """Counters and gauges through ray.util.metrics (scraped by Prometheus in the cluster)."""

    def __init__(self, stage: str) -> None:
        tags = {"stage": stage}
        self.counters = {
            key: create_metric(metric, tags) for key, metric in STREAM_COUNTERS.items()
        }
        self.restarts = create_metric(STREAM_RESTARTS, tags)
        self.lag = create_metric(STREAM_LAG, tags)
        self.event = create_metric(STREAM_LAST_EVENT_MS, tags)
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


def stream_ray(settings: StreamSettings) -> Any:
    """`ray`, joined to the cluster the stages run on (in their namespace)."""
    return connect_ray(settings, log_to_driver=False, namespace=settings.ray_namespace)


def start_pipeline(settings: StreamSettings) -> list[str]:
    """Create (or find) every stage actor; returns their names."""
    ray = stream_ray(settings)
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
                resources=one_unit_of(settings.stage_resource),
            ).remote(stage, replica, settings.model_dump_json())
            names.append(name)
    return names


def _find(settings: StreamSettings) -> list[tuple[str, Any]]:
    ray = stream_ray(settings)
    found = []
    for info in ray.util.list_named_actors(all_namespaces=True):
        name = info["name"] if isinstance(info, dict) else info
        namespace = info.get("namespace") if isinstance(info, dict) else settings.ray_namespace
        if namespace == settings.ray_namespace and name.startswith("stream-"):
            found.append((name, ray.get_actor(name, namespace=settings.ray_namespace)))
    return sorted(found)


def pipeline_status(settings: StreamSettings, timeout_s: float = 10) -> list[dict[str, Any]]:
    """Per actor: lag, rates, last event time, restarts and last error (or the error that
    prevents an answer)."""
    ray = stream_ray(settings)
    out = []
    for name, handle in _find(settings):
        try:
            stats = ray.get(handle.stats.remote(), timeout=timeout_s)
        except Exception as exc:
            # down or restarting: its crash record still tells restarts and the last error
            record = crash_record(f"{settings.ray_namespace}/{name}")
            stats = {
                "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                "running": False,
                "restarts": record.restarts,
                "last_error": record.last_error,
                "last_error_ms": record.last_error_ms,
            }
        out.append({"actor": name, **stats})
    return out


def stop_pipeline(settings: StreamSettings, say: Callable[[str], None] = print) -> list[str]:
    """Stop every stage actor gracefully (leaving consumer groups), then remove it."""
    ray = stream_ray(settings)
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
