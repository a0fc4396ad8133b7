"""Ray job entry point: `ray job submit --working-dir . -- python -m cryptopred_ingest.stream.job`.

Creates the topics and the tables the stages and sources write (the same ones
kuberay/base/risingwave/init.sql creates on RisingWave), starts the stage actors against
the cluster the job runs in and reports their status until the job is stopped (SIGTERM/SIGINT),
then stops them. `--detach` returns right after starting.
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
from cryptopred_ingest.stream.actors import pipeline_status, start_pipeline, stop_pipeline
from cryptopred_ingest.stream.settings import load_stream_settings


def ensure_tables(settings: Settings) -> list[str]:
    """Create the tables the app writes, if missing (idempotent; retried while the DB is
    unreachable); returns their names."""
    chosen = app_written_tables(settings.db_dialect)
    for attempt in db_retrying("creating the tables", settings.db_retry_max_s):
        with attempt, connect(settings.db_url, autocommit=True) as conn:
            create_schema(conn, settings.db_dialect, chosen)
    return [t.name for t in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--detach", action="store_true", help="return after starting")
    parser.add_argument("--report-every-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    try:
        # inside a Ray job, connect to the cluster the job runs in
        settings = load_stream_settings(ray_address="auto")
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ensure_topics(settings, ALL_TOPICS, settings.topic_partitions)
    print(f"tables ready: {', '.join(ensure_tables(settings))}", flush=True)
    for name in start_pipeline(settings):
        print(f"running {name}", flush=True)
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
    stop_pipeline(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
