"""`cryptopred ingest ...`: live, backfill, replay and synthetic trade sources.

`replay` and `synthetic` run in this process by default (the fast path); `--actor` runs them as
a named Ray actor instead. `live` always runs as a Ray actor (restartable, with metrics).
`backfill` runs in this process, resumable through cursor files under the data dir.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cryptopred_core.kafka import ensure_topics
from cryptopred_core.raycluster import connect_ray
from cryptopred_core.settings import SettingsError, _split_csv
from cryptopred_core.topics import DLQ, TRADES
from cryptopred_ingest.publish import DeliveryError, make_publisher
from cryptopred_ingest.settings import IngestSettings, load_ingest_settings
from cryptopred_ingest.sources.factory import (
    SourceKind,
    SourceSpec,
    build_runner,
    synthetic_spec,
)

app = typer.Typer(help="Trade sources: live Kraken, REST backfill, file replay, synthetic.")
console = Console(stderr=True)

FAST_PRODUCER: dict[str, Any] = {"linger.ms": 100, "batch.size": 1_000_000}
#: calls in a row a followed source actor may fail (a restart answers the next one) before
#: the follower decides the actor is gone
FOLLOW_MAX_UNANSWERED = 60


class Format(StrEnum):
    kraken_csv = "kraken-csv"
    jsonl = "jsonl"


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def _settings() -> IngestSettings:
    try:
        return load_ingest_settings()
    except SettingsError as exc:
        raise _fail(str(exc)) from None


def _pairs(text: str | None, settings: IngestSettings) -> tuple[str, ...]:
    if text is None:
        return tuple(settings.pairs)
    try:
        checked = IngestSettings.model_validate({"pairs": _split_csv(text)}).pairs
    except ValueError as exc:
        raise _fail(f"--pairs: {str(exc).splitlines()[-1].strip()}") from None
    return tuple(checked)


def _speed(text: str) -> float | None:
    from cryptopred_ingest.pacing import parse_speed

    try:
        return parse_speed(text)
    except ValueError as exc:
        raise _fail(f"--speed: {exc}") from None


def _run_local(spec: SourceSpec, settings: IngestSettings) -> None:
    ensure_topics(settings, [TRADES, DLQ])
    publisher = make_publisher(settings, spec.stage, **FAST_PRODUCER)
    import threading

    stop = threading.Event()
    run, stats = build_runner(spec, settings, publisher, stop)
    start_s = time.monotonic()
    try:
        try:
            run()
        except KeyboardInterrupt:
            stop.set()
            publisher.flush()
    except DeliveryError as exc:
        raise _fail(str(exc), code=1) from None
    elapsed_s = time.monotonic() - start_s
    counts = stats()
    rate = counts["trades"] / max(elapsed_s, 1e-9)
    console.print(
        f"{counts['trades']} trades, {counts['rejects']} rejects in {elapsed_s:.1f} s "
        f"({rate:,.0f} trades/s)"
    )


def _run_actor(spec: SourceSpec, settings: IngestSettings, name: str, follow: bool) -> None:
    from cryptopred_ingest.actors import start_source_actor

    ensure_topics(settings, [TRADES, DLQ])
    ray = connect_ray(settings, log_to_driver=True, start_local=True)
    actor = start_source_actor(spec, settings, name)
    console.print(f"actor {name!r} started")
    unanswered = 0
    try:
        while follow:
            try:
                done = ray.get(actor.wait.remote(5.0))
                stats = ray.get(actor.stats.remote())
                unanswered = 0
            except ray.exceptions.RayActorError as exc:  # it failed; Ray is restarting it
                unanswered += 1
                if unanswered > FOLLOW_MAX_UNANSWERED:  # out of restarts: gone for good
                    raise _fail(f"actor {name!r} is gone: {exc}", code=1) from None
                console.print(f"{name}: down ({type(exc).__name__}), Ray restarts it")
                time.sleep(1.0)
                continue
            console.print(source_status_line(name, stats), markup=False)
            if done:
                break
    except KeyboardInterrupt:
        console.print(f"stopping {name}: {ray.get(actor.stop.remote())}", markup=False)


def source_status_line(name: str, stats: dict[str, Any]) -> str:
    """One line of a source actor's status: counts, restarts and its last error if any."""
    counts = " ".join(
        f"{key}={stats[key]}"
        for key in ("trades", "rejects", "reconnects", "gaps_repaired")
        if key in stats
    )
    line = f"{name}: {counts} restarts={stats.get('restarts', 0)}"
    if stats.get("done"):
        line += " done"
    if stats.get("last_error"):
        line += f" last error: {str(stats['last_error']).splitlines()[0][:200]}"
    return line


@app.command()
def live(
    pairs: Annotated[str | None, typer.Option(help="comma-separated; default: settings")] = None,
    name: Annotated[str, typer.Option(help="Ray actor name")] = "ingest-live",
) -> None:
    """Follow Kraken WS v2 trades in a named Ray actor (reconnects, REST gap repair) until ^C."""
    settings = _settings()
    spec = SourceSpec("live", pairs=_pairs(pairs, settings))
    _run_actor(spec, settings, name, follow=True)


@app.command()
def replay(
    file: Annotated[Path, typer.Option("--file", exists=True, dir_okay=False)],
    fmt: Annotated[Format, typer.Option("--format")] = Format.kraken_csv,
    pair: Annotated[str | None, typer.Option(help="pair of a kraken-csv file")] = None,
    speed: Annotated[str, typer.Option(help="'max' or a speed-up factor X")] = "max",
    actor: Annotated[bool, typer.Option("--actor", help="run as a Ray actor")] = False,
) -> None:
    """Replay a Kraken time-and-sales CSV (`--pair` needed) or JSONL of Trade records."""
    settings = _settings()
    pairs = _pairs(pair, settings) if pair else ()
    if fmt is Format.kraken_csv and len(pairs) != 1:
        raise _fail("--pair: a kraken-csv replay needs exactly one pair, like BTC/USD")
    kind: SourceKind = "replay-kraken-csv" if fmt is Format.kraken_csv else "replay-jsonl"
    spec = SourceSpec(kind, pairs=pairs, path=str(file.resolve()), speed=_speed(speed))
    if actor:
        _run_actor(spec, settings, f"ingest-replay-{file.stem}", follow=True)
    else:
        _run_local(spec, settings)


@app.command()
def synthetic(
    pairs: Annotated[str | None, typer.Option(help="comma-separated; default: settings")] = None,
    days: Annotated[float, typer.Option(min=0.0)] = 1.0,
    seed: Annotated[int, typer.Option()] = 0,
    speed: Annotated[str, typer.Option(help="'max' or a speed-up factor X")] = "max",
    momentum: Annotated[
        float, typer.Option(min=-0.99, max=0.99, help="minute-return AR(1) drift (0: random walk)")
    ] = 0.0,
    live: Annotated[
        bool,
        typer.Option("--live", help="start --days before now, catch up, then run in real time"),
    ] = False,
    actor: Annotated[bool, typer.Option("--actor", help="run as a Ray actor")] = False,
) -> None:
    """Generate seeded synthetic trades (same seed, same bytes) from 2026-01-01, or with --live
    from --days ago up to now and on in real time (event time = wall time) until ^C."""
    settings = _settings()
    spec = synthetic_spec(_pairs(pairs, settings), days, seed, momentum, live)
    if not live:
        spec = replace(spec, speed=_speed(speed))
    if actor:
        _run_actor(spec, settings, f"ingest-synthetic-{seed}", follow=True)
    else:
        _run_local(spec, settings)


@app.command()
def backfill(
    since: Annotated[str, typer.Option(help="6h, 2d or 2026-11-01T00:00Z")],
    pairs: Annotated[str | None, typer.Option(help="comma-separated; default: settings")] = None,
    until: Annotated[str | None, typer.Option(help="end time; default: now")] = None,
) -> None:
    """Backfill trades from Kraken REST; a rerun resumes from the cursor files, no duplicates."""
    from rich.progress import Progress

    from cryptopred_ingest.backfill import (
        CursorStore,
        backfill,
        client_from_settings,
        cursor_dir,
        parse_time_ns,
    )
    from cryptopred_ingest.sources.kraken_rest import RestError

    settings = _settings()
    chosen = _pairs(pairs, settings)
    now_ns = time.time_ns()
    try:
        since_ns = parse_time_ns(since, now_ns)
        until_ns = parse_time_ns(until, now_ns) if until else None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    ensure_topics(settings, [TRADES, DLQ])
    publisher = make_publisher(settings, "ingest-backfill", **FAST_PRODUCER)
    client = client_from_settings(settings)
    end_ns = until_ns or now_ns
    with Progress(console=console) as bar:
        tasks = {p: bar.add_task(p, total=max(end_ns - since_ns, 1)) for p in chosen}

        def advance(pair: str, cursor_ns: int) -> None:
            bar.update(tasks[pair], completed=min(cursor_ns, end_ns) - since_ns)

        store = CursorStore(cursor_dir(settings.data_dir))
        try:
            counts = backfill(chosen, since_ns, until_ns, client, publisher, store, advance)
        except (DeliveryError, RestError) as exc:
            raise _fail(str(exc), code=1) from None
        for pair in chosen:
            bar.update(tasks[pair], completed=end_ns - since_ns)
    console.print(f"backfilled {counts}; {publisher.counts.rejects} rejects", markup=False)
