"""Trade sources as named, restartable Ray actors that export metrics.

The actor only holds state and threads; the source logic lives in `sources/`. Ray is imported
when an actor is started, never at import time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from cryptopred_core.metric_names import (
    INGEST_COUNTERS,
    INGEST_RESTARTS,
    INGEST_TRADES_PER_S,
    create_metric,
)
from cryptopred_core.raycluster import one_unit_of
from cryptopred_core.supervision import ray_supervisor
from cryptopred_ingest.publish import make_publisher
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.sources.factory import SourceSpec, build_runner

log = logging.getLogger(__name__)

PRODUCER_OVERRIDES: dict[str, Any] = {"linger.ms": 100, "batch.size": 1_000_000}
METRICS_EVERY_S = 1.0


def supervision_key(namespace: str, name: str) -> str:
    """Key of a source actor's crash record (see `cryptopred_core.supervision`)."""
    return f"{namespace}/{name}"


class _SourceMetrics:
    """A source's counters and trade-rate gauge through ray.util.metrics."""

    def __init__(self, source: str) -> None:
        tags = {"source": source}
        self.counters = {
            key: create_metric(metric, tags) for key, metric in INGEST_COUNTERS.items()
        }
        self.restarts = create_metric(INGEST_RESTARTS, tags)
        self.rate = create_metric(INGEST_TRADES_PER_S, tags)
        self.reported = dict.fromkeys(self.counters, 0)

    def report(self, stats: dict[str, Any], elapsed_s: float) -> None:
        """Add what the source counted since the last report; the rate over `elapsed_s`."""
        for name, counter in self.counters.items():
            delta = stats.get(name, 0) - self.reported[name]
            if delta > 0:
                counter.inc(delta)
                self.reported[name] += delta
                if name == "trades":
                    self.rate.set(delta / max(elapsed_s, 1e-6))


class TradeSourceWorker:
    """Runs one source in a thread from construction on, so a restarted actor starts again.

    A failure of the source ends the actor's process (`Supervisor.fail`) so Ray restarts it;
    a restarted actor first waits its crash-loop backoff.
    """

    def __init__(self, spec: SourceSpec, settings_json: str) -> None:
        import ray

        self.spec = spec
        self.settings = IngestSettings.model_validate_json(settings_json)
        context = ray.get_runtime_context()
        self.name = context.get_actor_name() or f"ingest-{spec.kind}"
        self.supervisor = ray_supervisor(
            supervision_key(context.namespace, self.name), self.settings.crash_backoff_max_s
        )
        self.stop_event = threading.Event()
        self.publisher = make_publisher(self.settings, spec.stage, **PRODUCER_OVERRIDES)
        self.run_source, self.read_stats = build_runner(
            spec, self.settings, self.publisher, self.stop_event
        )
        self._metrics = _SourceMetrics(str(spec.kind))
        if self.supervisor.restarted:
            self._metrics.restarts.inc(1)
        self.done = threading.Event()
        self.exported = threading.Event()
        threading.Thread(target=self._run, name="source", daemon=True).start()
        threading.Thread(target=self._export, name="metrics", daemon=True).start()

    def _run(self) -> None:
        try:
            if self.supervisor.wait_backoff(self.stop_event):
                self.run_source()
        except Exception as exc:
            self.supervisor.fail(f"source {self.name}", exc)
        finally:
            self.done.set()

    def _export(self) -> None:
        last_s = time.monotonic()
        while not self.done.wait(METRICS_EVERY_S):
            last_s = self._report(last_s)
            self.supervisor.note_healthy()
        self._report(last_s)
        self.exported.set()

    def _report(self, last_s: float) -> float:
        stats = self.read_stats()
        now_s = time.monotonic()
        self._metrics.report(stats, now_s - last_s)
        return now_s

    def stats(self) -> dict[str, Any]:
        exported = {f"metrics_{name}": value for name, value in self._metrics.reported.items()}
        record = self.supervisor.record
        return {
            **self.read_stats(),
            **exported,
            "done": self.done.is_set(),
            "pid": os.getpid(),
            "restarts": record.restarts,
            "last_error": record.last_error,
            "last_error_ms": record.last_error_ms,
        }

    def wait(self, timeout_s: float) -> bool:
        """True once the source has finished (replays and generators end; live does not)."""
        return self.done.wait(timeout_s) and self.exported.wait(timeout_s)

    def stop(self, timeout_s: float = 30.0) -> dict[str, Any]:
        self.stop_event.set()
        self.done.wait(timeout_s)
        return self.stats()


def start_source_actor(
    spec: SourceSpec,
    settings: IngestSettings,
    name: str,
    namespace: str = "cryptopred",
    detached: bool = False,
) -> Any:
    """Start (or get) the named actor running `spec`; Ray must be initialised. A detached one
    outlives its driver (stop it with its `stop` method, or `ray.kill`)."""
    import ray

    absolute = settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
    remote_cls = ray.remote(TradeSourceWorker)
    return remote_cls.options(  # type: ignore[attr-defined]
        name=name,
        namespace=namespace,
        get_if_exists=True,
        max_restarts=settings.actor_max_restarts,
        max_task_retries=0,
        max_concurrency=4,
        num_cpus=0,
        resources=one_unit_of(settings.source_resource),
        lifetime="detached" if detached else None,
    ).remote(spec, absolute.model_dump_json())
