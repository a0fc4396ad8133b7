"""`cryptopred train --pair BTC/USD --candle-seconds 60 ...`, also `python -m ...job`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console

if TYPE_CHECKING:
    from cryptopred_training.tune import TuneOutcome

app = typer.Typer(
    help="Train the price model on Ray, log it to MLflow and decide champion/challenger.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
Trigger = Literal["manual", "schedule", "demotion"]
err_console = Console(stderr=True)


def parse_time_ms(value: str | None) -> int | None:
    """Milliseconds since the epoch, or an ISO 8601 time (UTC when no zone is given)."""
    if value is None or value == "":
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither milliseconds nor an ISO time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_horizons(value: str | None) -> tuple[int, ...] | None:
    if value is None or value == "":
        return None
    try:
        horizons = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r}: expected seconds like 60,300,900") from None
    if not horizons or min(horizons) <= 0:
        raise typer.BadParameter(f"{value!r}: horizons must be positive seconds")
    return horizons


def tune_block(tuned: TuneOutcome | None) -> dict[str, Any] | None:
    """The report's `tune` entry: the search and its best trial; None without a search."""
    if tuned is None:
        return None
    return {
        "trials": len(tuned.trials),
        "scheduler": tuned.scheduler,
        "best_trial_id": tuned.best.trial_id,
        "best_val_loss": tuned.best.best_val_loss,
        "best": tuned.best.point.params(),
    }


@app.callback(invoke_without_command=True)
def train(
    pair: Annotated[str, typer.Option(help="pair to train on, e.g. BTC/USD")],
    candle_seconds: Annotated[int, typer.Option(min=1, help="candle width in seconds")] = 60,
    horizons: Annotated[
        str | None, typer.Option(help="horizons in seconds, comma-separated (60,300,900)")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Ray Train workers")] = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="one GPU per worker")] = False,
    trials: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Ray Tune trials (ASHA over size, window, learning rate) before the fit; "
            "1: no search",
        ),
    ] = None,
    since: Annotated[str | None, typer.Option(help="first candle start (ms or ISO time)")] = None,
    until: Annotated[str | None, typer.Option(help="end, exclusive (ms or ISO time)")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="resume the last run of this model from its checkpoint")
    ] = False,
    trigger: Annotated[
        Trigger, typer.Option(help="what started the run (an MLflow tag)")
    ] = "manual",
    report_json: Annotated[
        Path | None, typer.Option(help="also write the outcome to this JSON file")
    ] = None,
) -> None:
    """Read final indicator rows, validate, fit with Ray Train, evaluate, log and register."""
    import psycopg
    from pydantic import ValidationError

    from cryptopred_core.settings import describe_error
    from cryptopred_training.dataset import DataValidationError
    from cryptopred_training.settings import TrainSettings
    from cryptopred_training.steps import EpochReport
    from cryptopred_training.train_run import TrainRequest
    from cryptopred_training.train_run import train as run_job

    try:
        settings = TrainSettings()
    except ValidationError as exc:
        err_console.print(f"error: {describe_error(exc)}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    n_trials = trials or settings.train_trials
    if n_trials > 1 and resume:
        err_console.print("error: --resume cannot be combined with --trials > 1", markup=False)
        raise typer.Exit(2)
    request = TrainRequest(
        pair=pair,
        candle_seconds=candle_seconds,
        horizon_seconds=parse_horizons(horizons),
        since_ms=parse_time_ms(since),
        until_ms=parse_time_ms(until),
        num_workers=workers or settings.train_workers,
        use_gpu=gpu or settings.train_use_gpu,
        resume=resume,
        trigger=trigger,
        trials=n_trials,
    )

    def on_epoch(report: EpochReport) -> None:
        best = " [green]best[/]" if report.is_best else ""
        console.print(
            f"epoch {report.epoch:>3}  train loss {report.train_loss:.4f}  "
            f"val loss {report.validation['loss']:.4f}  val mae {report.validation['mae']:.4f}  "
            f"{report.samples_per_second:,.0f} samples/s  {report.seconds:.1f} s{best}",
            soft_wrap=True,
        )

    try:
        result = run_job(
            settings, request, say=lambda line: console.print(line, markup=False), on_epoch=on_epoch
        )
    except DataValidationError as exc:
        err_console.print(f"error: bad training data: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except (ValueError, TimeoutError, MemoryError) as exc:
        err_console.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        err_console.print(f"error: database: {first_line}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    decision = result.outcome.decision
    if report_json is not None:
        outcome = {
            "name": result.name,
            "version": result.logged.version,
            "run_id": result.logged.run_id,
            "decision": decision.decision,
            "reason": decision.reason,
            "served": decision.served,
            "baseline_version": result.logged.baseline_version,
            "champion_version": result.logged.champion_version,
            "n_rows": int(result.outcome.summary["n_rows"]),
            "fit_seconds": result.fit_seconds,
            "total_seconds": result.total_seconds,
            "trials": n_trials,
            "tune": tune_block(result.tune),
        }
        report_json.write_text(json.dumps(outcome))
    if result.tune is not None:
        best = result.tune.best
        console.print(
            f"{result.name}: best of {len(result.tune.trials)} trials ({best.trial_id}): "
            f"{best.point.size.label}, window {best.point.window_steps}, "
            f"learning rate {best.point.learning_rate:.3g}, val loss {best.best_val_loss:.4f}",
            soft_wrap=True,
        )
    colour = "green" if decision.promote else "yellow"
    console.print(
        f"{result.name} version {result.logged.version}: [{colour}]{decision.decision}[/] "
        f"({decision.reason}); fit {result.fit_seconds:.0f} s, total {result.total_seconds:.0f} s",
        soft_wrap=True,
    )
    console.print(
        f"{result.name}: baseline {result.outcome.baseline_predictor.kind} is version "
        f"{result.logged.baseline_version}; champion: version {result.logged.champion_version}",
        soft_wrap=True,
    )
