"""`cryptopred stream start|stop|status`: the candle, indicator and sink stages on Ray."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from cryptopred_core.kafka import ensure_topics
from cryptopred_core.settings import SettingsError
from cryptopred_core.topics import ALL_TOPICS
from cryptopred_ingest.stream.settings import StreamSettings, load_stream_settings

app = typer.Typer(help="Streaming stages: candles, indicators and the DB sink as Ray actors.")
console = Console()
err_console = Console(stderr=True)


def _settings(**overrides: Any) -> StreamSettings:
    try:
        return load_stream_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        err_console.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _join_ray(settings: StreamSettings) -> StreamSettings:
    """Join the cluster the stages run on, or exit 1 with one line when none answers."""
    from cryptopred_ingest.stream.actors import stream_ray

    try:
        stream_ray(settings)
    except ConnectionError as exc:
        err_console.print(f"error: ray: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    return settings


@app.command()
def start(
    candle_replicas: Annotated[int | None, typer.Option(min=1, help="candle actors")] = None,
    indicator_replicas: Annotated[int | None, typer.Option(min=1, help="indicator actors")] = None,
    candle_seconds: Annotated[
        str | None, typer.Option(help="candle widths in seconds, e.g. 60,300,3600")
    ] = None,
) -> None:
    """Start (or find) every stage actor on the Ray cluster; they run until `stream stop`."""
    from cryptopred_ingest.stream.actors import start_pipeline

    settings = _settings(
        candle_replicas=candle_replicas,
        indicator_replicas=indicator_replicas,
        candle_seconds=candle_seconds,
    )
    _join_ray(settings)
    ensure_topics(settings, ALL_TOPICS, settings.topic_partitions)
    for name in start_pipeline(settings):
        console.print(f"running {name}", markup=False)


@app.command()
def stop() -> None:
    """Stop every stage actor (they leave their consumer groups; offsets stay committed)."""
    from cryptopred_ingest.stream.actors import stop_pipeline

    if not stop_pipeline(
        _join_ray(_settings()), say=lambda line: console.print(line, markup=False)
    ):
        console.print("no stage actor was running")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Per stage actor: records behind (lag), rates and the last event time."""
    from cryptopred_ingest.stream.actors import pipeline_status

    rows = pipeline_status(_join_ray(_settings()))
    if as_json:
        print(json.dumps(rows))
    elif not rows:
        console.print("no stage actor is running")
    else:
        print_status(rows)
    if not rows or any(not r.get("running") for r in rows):
        raise typer.Exit(1)


def _utc(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_status(rows: list[dict[str, Any]]) -> None:
    """One line per actor; below it, its last error (with when) if it ever failed."""
    console.print(
        f"{'actor':<22} {'state':<9} {'restarts':>8} {'consumed':>10} {'per s':>9} {'lag':>8} "
        f"{'dead':>6}  last event (UTC)",
        soft_wrap=True,
    )
    for r in rows:
        restarts = r.get("restarts", "-")
        if r.get("error") and "consumed" not in r:
            console.print(
                f"{r['actor']:<22} {'down':<9} {restarts:>8} [red]{escape(str(r['error']))}[/]",
                soft_wrap=True,
            )
        else:
            console.print(
                f"{r['actor']:<22} {r.get('state', '-'):<9} {restarts:>8} {r['consumed']:>10} "
                f"{r['consumed_per_s']:>9.0f} {r['lag_total']:>8} {r['dead']:>6}  "
                f"{_utc(r.get('last_event_ms'))}",
                markup=False,
                soft_wrap=True,
            )
        if r.get("last_error"):
            console.print(
                f"{'':<22} last error at {_utc(r.get('last_error_ms'))}: "
                f"{str(r['last_error']).splitlines()[0][:200]}",
                markup=False,
                style="red",
                soft_wrap=True,
            )
