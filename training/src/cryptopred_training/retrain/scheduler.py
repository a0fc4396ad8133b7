"""The retraining scheduler: a detached Ray actor that retrains each served model on its slot.

One thread walks the served models (pairs x candle widths) every `retrain_poll_s`: it reads
each model's last run and champion from MLflow, notices a demotion (the `champion` alias gone,
or moved by `cryptopred_training.demotion`, which tags the registered model `demoted_at_ms`),
and runs the models that are due, one at a time, each as a child process (`python -m
cryptopred_training.job`) on the rolling window. The child is the same job as `cryptopred
train`, so it faces the same gate and logs to MLflow the same way. A child that fails, runs
too long or uses too much memory is stopped and logged to MLflow as a failed run with its
reason; the model is retried at its next slot. A failure of the scheduler itself ends its
process so Ray restarts it (crash record and backoff as the stream stages have).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptopred_core.settings import settings_environ
from cryptopred_training.demotion import demotion_tag_ms
from cryptopred_training.retrain.child import ChildResult, run_child
from cryptopred_training.retrain.history import (
    RunRecord,
    champion_version,
    last_run,
    log_failed_run,
)
from cryptopred_training.retrain.schedule import Slot, Window, next_slot, rolling_window
from cryptopred_training.settings import TrainSettings, model_name

log = logging.getLogger(__name__)

SCHEDULER_ACTOR = "retrain-scheduler"
NAMESPACE = "cryptopred"
PEAK_RSS_METRIC = "driver_peak_rss_mb"  # the run's own processes, as the watchdog saw them
CHILD_NICE = 10  # the stream stages and Serve replicas come first on a shared machine


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class ModelState:
    """What the scheduler knows about one served model."""

    pair: str
    candle_seconds: int
    last: RunRecord | None = None
    champion: str | None = None
    demoted_at_ms: int | None = None
    slot: Slot | None = None
    running_since_ms: int | None = None
    observed: bool = False  # read from MLflow at least once
    demotion_tag_ms: int | None = None  # the model's demoted_at_ms tag when champion last changed

    @property
    def name(self) -> str:
        return model_name(self.pair, self.candle_seconds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pair": self.pair,
            "candle_seconds": self.candle_seconds,
            "last": self.last.as_dict() if self.last else None,
            "champion": self.champion,
            "demoted_at_ms": self.demoted_at_ms,
            "next_due_ms": self.slot.due_ms if self.slot else None,
            "next_trigger": self.slot.trigger if self.slot else None,
            "running_since_ms": self.running_since_ms,
        }


def noticed_demotion(
    model: ModelState, champion: str | None, tag_ms: int | None, at_ms: int
) -> int | None:
    """When the champion `model` saw was demoted, given what the registry says now (the
    `champion` version and the registered model's `demoted_at_ms` tag); None: no demotion.

    A demotion is the alias gone (at `at_ms`), or the alias moved to another version with a
    `demoted_at_ms` tag other than the one seen when the champion last changed (at the tag's
    time: `demote_champion` sets it before moving the alias). The first observation only
    records what it sees."""
    if not model.observed or model.champion is None or champion == model.champion:
        return None
    if champion is None:
        return at_ms
    if tag_ms is not None and tag_ms != model.demotion_tag_ms:
        return tag_ms
    return None


def newest_final_start_ms(db_url: str, pair: str, candle_seconds: int) -> int | None:
    """The start of the newest final indicator row of one model's series (None: no rows)."""
    from cryptopred_core.db import connect

    with connect(db_url) as conn:
        row = conn.execute(
            "SELECT max(window_start_ms) FROM technical_indicators "
            "WHERE pair = %s AND candle_seconds = %s AND final",
            (pair, candle_seconds),
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


class RetrainScheduler:
    """The actor; `status()` is what `cryptopred retrain status` and the demo view show."""

    def __init__(self, settings: TrainSettings, ray_address: str) -> None:
        from mlflow import MlflowClient

        from cryptopred_core.supervision import ray_supervisor

        every_s = settings.retrain_every_s
        if every_s is None:
            raise ValueError("CRYPTOPRED_RETRAIN_EVERY is off: nothing to schedule")
        self.settings = settings
        self.every_s = every_s
        self.ray_address = ray_address
        self.client = MlflowClient(
            tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri
        )
        self.models = [ModelState(p, c) for p in settings.pairs for c in settings.candle_seconds]
        self.log_dir = settings.data_dir.resolve() / "retrain"
        self.runs_started = 0
        self.supervisor = ray_supervisor(SCHEDULER_ACTOR, settings.crash_backoff_max_s)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="retrain", daemon=True)
        self._thread.start()

    # -- the actor's methods ----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        record = self.supervisor.record
        with self._lock:
            models = [m.as_dict() for m in self.models]
        return {
            "every_s": self.every_s,
            "window_s": self.settings.retrain_window_s,
            "pid": os.getpid(),
            "runs_started": self.runs_started,
            "restarts": record.restarts,
            "last_error": record.last_error,
            "models": models,
        }

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop the loop and a run in progress (its child process is ended)."""
        self._stop.set()
        self._thread.join(timeout_s)

    # -- the loop ---------------------------------------------------------------------------
    def _loop(self) -> None:
        if not self.supervisor.wait_backoff(self._stop):
            return
        while not self._stop.is_set():
            try:
                self.tick()
                self.supervisor.note_healthy()
            except Exception as exc:
                self.supervisor.fail("retrain scheduler", exc)
                return
            self._stop.wait(self.settings.retrain_poll_s)

    def tick(self) -> None:
        """Observe every model and run the ones that are due, one at a time."""
        for model in self.models:
            if self._stop.is_set():
                return
            self._observe(model)
            if model.slot is not None and model.slot.due_ms <= now_ms():
                self._run(model, model.slot.trigger)
                self._observe(model)

    def _observe(self, model: ModelState) -> None:
        last = last_run(self.client, model.name)
        champion = champion_version(self.client, model.name)
        tag_ms = demotion_tag_ms(self.client, model.name)
        with self._lock:
            demoted_at_ms = noticed_demotion(model, champion, tag_ms, now_ms())
            if demoted_at_ms is not None:
                model.demoted_at_ms = demoted_at_ms
                log.warning("%s: champion %s was demoted", model.name, model.champion)
            if not model.observed or champion != model.champion:
                model.demotion_tag_ms = tag_ms
            model.observed = True
            model.champion = champion
            model.last = last
            model.slot = next_slot(
                last_started_ms=last.started_ms if last else None,
                every_s=self.every_s,
                demoted_at_ms=model.demoted_at_ms,
                after_demotion_s=self.settings.retrain_after_demotion_s,
                now_ms=now_ms(),
            )

    def _run(self, model: ModelState, trigger: str) -> None:
        started_ms = now_ms()
        with self._lock:
            model.running_since_ms = started_ms
        self.runs_started += 1
        window: Window | None = None
        try:
            newest = newest_final_start_ms(self.settings.db_url, model.pair, model.candle_seconds)
            if newest is None:
                self._failed(model, trigger, "no final rows in technical_indicators", None)
                return
            window = rolling_window(newest, model.candle_seconds, self.settings.retrain_window_s)
            result = self._train(model, trigger, window, started_ms)
            if not result.ok:
                self._failed(model, trigger, result.reason, window)
            else:
                log.info("%s: %s run done in %.0f s", model.name, trigger, result.seconds)
        except Exception as exc:  # the DB or MLflow: this run fails, the schedule goes on
            self._failed(model, trigger, f"{type(exc).__name__}: {exc}", window)
        finally:
            with self._lock:
                model.running_since_ms = None

    def _train(self, model: ModelState, trigger: str, window: Window, started_ms: int) -> Any:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started_ms / 1000))
        log_path = self.log_dir / f"{model.name}-{stamp}.log"
        argv = [
            sys.executable,
            "-m",
            "cryptopred_training.job",
            "--pair",
            model.pair,
            "--candle-seconds",
            str(model.candle_seconds),
            "--since",
            str(window.since_ms),
            "--until",
            str(window.until_ms),
            "--trigger",
            trigger,
            "--report-json",
            str(log_path.with_suffix(".json")),
        ]
        env = {
            **os.environ,
            **settings_environ(self.settings),
            "CRYPTOPRED_TRAIN_MAX_RSS_MB": str(self.settings.retrain_max_rss_mb),
            "CRYPTOPRED_TRAIN_NICE": str(CHILD_NICE),
            "RAY_ADDRESS": self.ray_address,
        }
        log.info("%s: %s run on %s .. %s", model.name, trigger, window.since_ms, window.until_ms)
        result: ChildResult = run_child(
            argv,
            env,
            log_path,
            timeout_s=self.settings.retrain_timeout_s,
            max_rss_mb=self.settings.retrain_max_rss_mb,
            nice=CHILD_NICE,
            stop=self._stop,
        )
        if result.ok:
            report = json.loads(log_path.with_suffix(".json").read_text())
            log.info("%s: %s (%s)", model.name, report["decision"], report["reason"])
            self.client.log_metric(report["run_id"], PEAK_RSS_METRIC, result.peak_rss_mb)
        return result

    def _failed(self, model: ModelState, trigger: str, reason: str, window: Window | None) -> None:
        log.warning("%s: %s run failed: %s", model.name, trigger, reason)
        log_failed_run(
            self.client,
            name=model.name,
            pair=model.pair,
            candle_seconds=model.candle_seconds,
            trigger=trigger,
            reason=reason,
            window=window,
        )


# -- from the CLI and the demo ---------------------------------------------------------------
def find_scheduler() -> Any | None:
    """The running scheduler's handle (Ray must be initialised), or None."""
    import ray

    try:
        return ray.get_actor(SCHEDULER_ACTOR, namespace=NAMESPACE)
    except ValueError:
        return None


def start_scheduler(settings: TrainSettings) -> Any:
    """Create the detached scheduler (or find the running one); Ray must be initialised."""
    import ray

    address = ray.get_runtime_context().gcs_address
    remote_cls = ray.remote(RetrainScheduler)
    return remote_cls.options(  # type: ignore[attr-defined]
        name=SCHEDULER_ACTOR,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=-1,
        num_cpus=0,
        max_concurrency=4,
    ).remote(settings, address)


def stop_scheduler(timeout_s: float = 30.0) -> bool:
    """Stop and remove the scheduler; False when none was running."""
    import ray

    handle = find_scheduler()
    if handle is None:
        return False
    try:
        ray.get(handle.stop.remote(), timeout=timeout_s)
    finally:
        ray.kill(handle, no_restart=True)
    return True


def log_dir(settings: TrainSettings) -> Path:
    return settings.data_dir.resolve() / "retrain"


def retrain_in_process(settings: TrainSettings, say: Any = print) -> list[str]:
    """Retrain every served model once, now, in this process, on the rolling window; returns
    the names whose run failed (each logged to MLflow with its reason)."""
    from mlflow import MlflowClient

    from cryptopred_training.train_run import TrainRequest, train

    client = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    failed = []
    for pair in settings.pairs:
        for width in settings.candle_seconds:
            name = model_name(pair, width)
            window: Window | None = None
            try:
                newest = newest_final_start_ms(settings.db_url, pair, width)
                if newest is None:
                    raise ValueError("no final rows in technical_indicators")
                window = rolling_window(newest, width, settings.retrain_window_s)
                say(f"retraining {name} on {window.since_ms} .. {window.until_ms}")
                request = TrainRequest(
                    pair,
                    width,
                    since_ms=window.since_ms,
                    until_ms=window.until_ms,
                    num_workers=settings.train_workers,
                    use_gpu=settings.train_use_gpu,
                    trigger="schedule",
                )
                report = train(settings, request, say=say)
                decision = report.outcome.decision
                say(f"{name} v{report.logged.version}: {decision.decision} ({decision.reason})")
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                say(f"{name}: failed: {reason}")
                failed.append(name)
                log_failed_run(
                    client,
                    name=name,
                    pair=pair,
                    candle_seconds=width,
                    trigger="schedule",
                    reason=reason,
                    window=window,
                )
    return failed
