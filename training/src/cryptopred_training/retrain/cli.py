"""`cryptopred retrain status|start|stop|once|cron`: scheduled retraining of the served models."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    help="Retrain the served models on a schedule (CRYPTOPRED_RETRAIN_EVERY, _WINDOW).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def _settings() -> Any:
    from pydantic import ValidationError

    from cryptopred_core.settings import describe_error
    from cryptopred_training.settings import TrainSettings

    try:
        return TrainSettings()
    except ValidationError as exc:
        raise _fail(describe_error(exc), 2) from None


def _join_cluster(settings: Any) -> None:
    """Join the running Ray cluster; the scheduler must outlive this command."""
    from cryptopred_core.raycluster import NoRayClusterError, connect_ray

    try:
        connect_ray(settings, log_to_driver=False)
    except NoRayClusterError as exc:
        raise _fail(str(exc)) from None


def _clock(ts_ms: int | None) -> str:
    if not ts_ms:
        return "-"
    return time.strftime("%m-%d %H:%M:%S", time.gmtime(ts_ms / 1000))


def _in(ts_ms: int | None, now_ms: int) -> str:
    if ts_ms is None:
        return "-"
    seconds = (ts_ms - now_ms) / 1000
    return (
        "due now"
        if seconds <= 0
        else f"in {seconds / 60:.0f} min"
        if seconds >= 60
        else (f"in {seconds:.0f} s")
    )


def describe_model(row: dict[str, Any], now_ms: int) -> str:
    """One line: the model, its last run and outcome, its next slot."""
    last = row.get("last")
    if last is None:
        outcome = "never trained"
    else:
        version = f" v{last['version']}" if last.get("version") else ""
        outcome = (
            f"last {_clock(last['started_ms'])} ({last['trigger']}): "
            f"{last['decision']}{version}: {last['reason']}"
        )
    if row.get("running_since_ms"):
        nxt = f"running since {_clock(row['running_since_ms'])}"
    elif row.get("next_due_ms") is not None:
        nxt = f"next {_in(row['next_due_ms'], now_ms)} ({row['next_trigger']})"
    else:
        nxt = "no schedule"
    return f"{row['name']:<14} {outcome}; {nxt}"


def models_from_mlflow(settings: Any) -> list[dict[str, Any]]:
    """Every served model's last run and champion, straight from MLflow (no scheduler)."""
    from mlflow import MlflowClient

    from cryptopred_training.retrain.history import champion_version, last_run
    from cryptopred_training.settings import model_name

    client = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    rows = []
    for pair in settings.pairs:
        for width in settings.candle_seconds:
            name = model_name(pair, width)
            last = last_run(client, name)
            rows.append(
                {
                    "name": name,
                    "pair": pair,
                    "candle_seconds": width,
                    "last": last.as_dict() if last else None,
                    "champion": champion_version(client, name),
                    "next_due_ms": None,
                    "next_trigger": None,
                    "running_since_ms": None,
                }
            )
    return rows


def read_status(settings: Any) -> dict[str, Any]:
    """The scheduler's status, or MLflow's record of the last runs when it is not running."""
    import ray

    from cryptopred_training.retrain.scheduler import find_scheduler

    handle = find_scheduler() if ray.is_initialized() else None
    if handle is not None:
        try:
            status: dict[str, Any] = ray.get(handle.status.remote(), timeout=10)
            return {"running": True, **status}
        except Exception as exc:  # down or restarting: fall back to MLflow
            return {"running": False, "error": f"{type(exc).__name__}: {exc}"} | {
                "models": models_from_mlflow(settings)
            }
    return {"running": False, "models": models_from_mlflow(settings)}


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Per served model: the last run, its outcome (champion/challenger and why), the next slot."""
    from cryptopred_training.retrain.schedule import format_duration

    settings = _settings()
    _join_cluster(settings)
    found = read_status(settings)
    if as_json:
        print(json.dumps(found))
        return
    if found["running"]:
        console.print(
            f"scheduler running: every {format_duration(found['every_s'])}, window "
            f"{format_duration(found['window_s'])}, {found['runs_started']} run(s) started, "
            f"{found['restarts']} restart(s)"
            + (f", last error: {escape(found['last_error'])}" if found["last_error"] else ""),
            soft_wrap=True,
        )
    else:
        console.print(
            f"scheduler not running (CRYPTOPRED_RETRAIN_EVERY={settings.retrain_every}); "
            "`cryptopred retrain start` starts it",
            soft_wrap=True,
        )
    now_ms = time.time_ns() // 1_000_000
    for row in found["models"]:
        console.print(escape(describe_model(row, now_ms)), soft_wrap=True, highlight=False)


@app.command()
def start() -> None:
    """Start the scheduler on the running Ray cluster (it runs until `cryptopred retrain stop`)."""
    from cryptopred_training.retrain.schedule import format_duration
    from cryptopred_training.retrain.scheduler import start_scheduler

    settings = _settings()
    every_s = settings.retrain_every_s
    if every_s is None:
        raise _fail("CRYPTOPRED_RETRAIN_EVERY is off; set it, e.g. CRYPTOPRED_RETRAIN_EVERY=6h", 2)
    _join_cluster(settings)
    start_scheduler(settings)
    console.print(
        f"retraining {len(settings.pairs) * len(settings.candle_seconds)} model(s) every "
        f"{format_duration(every_s)} on the last {settings.retrain_window} of history",
        soft_wrap=True,
    )


@app.command()
def stop() -> None:
    """Stop the scheduler (a run in progress is ended and logged as failed)."""
    from cryptopred_training.retrain.scheduler import stop_scheduler

    settings = _settings()
    _join_cluster(settings)
    console.print("scheduler stopped" if stop_scheduler() else "no scheduler was running")


@app.command()
def once() -> None:
    """Retrain every served model now on the rolling window, in this process, one at a time
    (what the cluster's RayCronJob runs at each slot); exit 1 if any run failed."""
    from cryptopred_training.retrain.scheduler import retrain_in_process

    settings = _settings()
    failed = retrain_in_process(settings, say=lambda line: console.print(line, markup=False))
    if failed:
        raise _fail(f"{len(failed)} run(s) failed: {', '.join(failed)}")


@app.command()
def cron() -> None:
    """Print the cron schedule of CRYPTOPRED_RETRAIN_EVERY (the cluster's RayCronJob uses it)."""
    from cryptopred_training.retrain.schedule import cron_schedule

    settings = _settings()
    every_s = settings.retrain_every_s
    if every_s is None:
        raise _fail("CRYPTOPRED_RETRAIN_EVERY is off", 2)
    try:
        print(cron_schedule(every_s))
    except ValueError as exc:
        raise _fail(f"CRYPTOPRED_RETRAIN_EVERY: {exc}", 2) from None
