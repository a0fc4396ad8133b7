"""Ray job entry point: `ray job submit --working-dir . -- python -m cryptopred_ingest.stream.job`.

Creates the topics and the tables the stages and sources write (the same ones
kuberay/base/risingwave/init.sql creates on RisingWave), starts the stage actors against
the cluster the job runs in and, with `--live-source`, the live Kraken WS source (detached actor
`ingest-live`, as `cryptopred ingest live` runs it; pairs and URLs from the same settings), and
reports their status until the job is stopped (SIGTERM/SIGINT), then stops them. `--detach`
returns right after starting.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from cryptopred_core.db import app_written_tables, connect, create_schema
from cryptopred_core.kafka import ensure_topics
from cryptopred_core.retry import db_retrying
from cryptopred_core.settings import Settings, SettingsError
from cryptopred_core.topics import ALL_TOPICS
from cryptopred_ingest.settings import load_ingest_settings
from cryptopred_ingest.stream.actors import (
    pipeline_status,
    start_pipeline,
    stop_pipeline,
    stream_ray,
)
from cryptopred_ingest.stream.settings import StreamSettings, load_stream_settings

#: the live source's actor name, the default of `cryptopred ingest live`
LIVE_SOURCE_ACTOR = "ingest-live"


def ensure_tables(settings: Settings) -> list[str]:
    """Create the tables the app writes, if missing (idempotent; retried while the DB is
    unreachable); returns their names."""
    chosen = app_written_tables(settings.db_dialect)
    for attempt in db_retrying("creating the tables", settings.db_retry_max_s):
        with attempt, connect(settings.db_url, autocommit=True) as conn:
            create_schema(conn, settings.db_dialect, chosen)
    return [t.name for t in chosen]


def start_live_source(settings: StreamSettings) -> str:
    """Start (or find) the live Kraken WS source as a detached actor that Ray restarts
    (`CRYPTOPRED_ACTOR_MAX_RESTARTS`); a restart resumes from its state file under
    `CRYPTOPRED_DATA_DIR` and repairs the gap from REST. Returns the actor's name."""
    from cryptopred_ingest.actors import start_source_actor
    from cryptopred_ingest.sources.factory import SourceSpec

    ingest = load_ingest_settings(ray_address=settings.ray_address)
    stream_ray(settings)
    spec = SourceSpec("live", pairs=tuple(ingest.pairs))
    start_source_actor(spec, ingest, LIVE_SOURCE_ACTOR, settings.ray_namespace, detached=True)
    return LIVE_SOURCE_ACTOR


def live_source_status(settings: StreamSettings, timeout_s: float = 10) -> str | None:
    """One status line of the live source actor; None when there is none."""
    from cryptopred_ingest.cli import source_status_line

    ray = stream_ray(settings)
    try:
        actor = ray.get_actor(LIVE_SOURCE_ACTOR, namespace=settings.ray_namespace)
    except ValueError:
        return None
    try:
        stats = ray.get(actor.stats.remote(), timeout=timeout_s)
    except Exception as exc:  # down or restarting
        return f"{LIVE_SOURCE_ACTOR}: {type(exc).__name__}"
    return source_status_line(LIVE_SOURCE_ACTOR, stats)


def stop_live_source(settings: StreamSettings, timeout_s: float = 60) -> bool:
    """Stop the live source (it flushes and saves its state), then remove its actor; False
    when there was none."""
    ray = stream_ray(settings)
    try:
        actor = ray.get_actor(LIVE_SOURCE_ACTOR, namespace=settings.ray_namespace)
    except ValueError:
        return False
    try:
        ray.get(actor.stop.remote(), timeout=timeout_s)
    except Exception as exc:
        print(f"{LIVE_SOURCE_ACTOR}: graceful stop failed ({type(exc).__name__})", flush=True)
    ray.kill(actor, no_restart=True)
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--detach", action="store_true", help="return after starting")
    parser.add_argument(
        "--live-source",
        action="store_true",
        help=f"also run the live Kraken WS source (detached actor {LIVE_SOURCE_ACTOR})",
    )
    parser.add_argument("--report-every-s", type=float, default=30.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # inside a Ray job, connect to the cluster the job runs in
        settings = load_stream_settings(ray_address="auto")
        if args.live_source:
            load_ingest_settings(ray_address="auto")  # a bad Kraken setting fails here
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ensure_topics(settings, ALL_TOPICS, settings.topic_partitions)
    print(f"tables ready: {', '.join(ensure_tables(settings))}", flush=True)
    for name in start_pipeline(settings):
        print(f"running {name}", flush=True)
    if args.live_source:
        print(f"running {start_live_source(settings)}", flush=True)
    if args.detach:
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(args.report_every_s):
        for row in pipeline_status(settings):
            print(
                f"{row['actor']}: consumed={row.get('consumed')} lag={row.get('lag_total')} "
                f"dead={row.get('dead')} error={row.get('error')}",
                flush=True,
            )
        live = live_source_status(settings)
        if live is not None:
            print(live, flush=True)
    if stop_live_source(settings):
        print(f"stopped {LIVE_SOURCE_ACTOR}", flush=True)
    stop_pipeline(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
