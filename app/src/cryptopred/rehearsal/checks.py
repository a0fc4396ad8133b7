"""What the rehearsal must find at the end: jobs done, rows in the tables, a champion, Serve
answering and publishing, every pod below its memory limit."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from confluent_kafka import TopicPartition

from cryptopred.rehearsal.jobs import Submitted, job_logs, job_status
from cryptopred.rehearsal.report import MIB, Usage
from cryptopred_core import topics
from cryptopred_core.db import connect
from cryptopred_core.kafka import make_consumer
from cryptopred_core.settings import Settings

Say = Callable[[str], None]
#: the tables whose rows show trades went through every stage
STAGE_TABLES = ("candles", "technical_indicators")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def save_job_logs(done: Submitted, dashboard: str, token: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{done.job.name}.log"
    try:
        path.write_text(job_logs(dashboard, token, done.submission_id))
    except httpx.HTTPError as exc:
        path.write_text(f"logs unavailable: {exc}")
    return path


def wait_running(done: Submitted, dashboard: str, token: str, timeout_s: float) -> str:
    """Until a long-running job is RUNNING (or has ended, which is a failure)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done.status = job_status(dashboard, token, done.submission_id)
        if done.status != "PENDING":
            break
        time.sleep(1)
    return done.status


def row_counts(db_url: str, tables: tuple[str, ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    with connect(db_url) as conn:
        for table in tables:
            try:
                row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                counts[table] = int(row[0]) if row else 0
            except Exception:
                conn.rollback()
                counts[table] = -1  # missing
    return counts


def wait_stream_settled(
    db_url: str, say: Say, quiet_s: float = 20.0, timeout_s: float = 600.0
) -> dict[str, int]:
    """Until the stage tables stop growing for `quiet_s` (the stream caught up)."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, int] = {}
    since = time.monotonic()
    while time.monotonic() < deadline:
        counts = row_counts(db_url, STAGE_TABLES)
        if counts != last:
            last, since = counts, time.monotonic()
        elif all(v > 0 for v in counts.values()) and time.monotonic() - since >= quiet_s:
            break
        time.sleep(3)
    say(f"stream tables: {last}")
    return last


def job_checks(submitted: list[Submitted]) -> list[Check]:
    out = []
    for done in submitted:
        wanted = "SUCCEEDED" if done.job.wait else "RUNNING"
        out.append(
            Check(
                f"{done.job.kind} {done.job.name}",
                done.status == wanted,
                f"{done.status} (wanted {wanted}); `{done.entrypoint}`",
            )
        )
    return out


def table_checks(db_url: str) -> list[Check]:
    counts = row_counts(db_url, (*STAGE_TABLES, "stream_checkpoints"))
    return [
        Check(f"table {name}", rows > 0, "missing" if rows < 0 else f"{rows} rows")
        for name, rows in counts.items()
        if name in STAGE_TABLES or rows < 0
    ]


def champions(mlflow_uri: str) -> dict[str, str | None]:
    """Each registered model and the version its `champion` alias names (None: no alias)."""
    answer = httpx.get(
        f"{mlflow_uri}/api/2.0/mlflow/registered-models/search",
        params={"max_results": 100},
        timeout=30,
        trust_env=False,
    )
    answer.raise_for_status()
    out: dict[str, str | None] = {}
    for model in answer.json().get("registered_models", []):
        aliases = {a["alias"]: a["version"] for a in model.get("aliases", [])}
        out[model["name"]] = aliases.get("champion")
    return out


def champion_check(mlflow_uri: str, settings: Settings) -> Check:
    try:
        found = champions(mlflow_uri)
    except httpx.HTTPError as exc:
        return Check("champion registered", False, f"MLflow: {exc}")
    with_champion = {name: v for name, v in found.items() if v is not None}
    return Check(
        "champion registered",
        bool(with_champion),
        f"{len(with_champion)} of {len(found)} registered models: {with_champion}",
    )


def topic_messages(settings: Settings, topic: str) -> int:
    consumer = make_consumer(settings, "cryptopred-rehearsal-count")
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        total = 0
        for partition in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def serve_checks(
    base_url: str,
    app_status: Callable[[], dict[str, str]],
    settings: Settings,
    timeout_s: float,
    say: Say,
) -> list[Check]:
    """Serve RUNNING, `/v1/predictions/<pair>` answering for a served pair, predictions in
    the topic and the table."""
    deadline = time.monotonic() + timeout_s
    status: dict[str, str] = {}
    while time.monotonic() < deadline:
        status = app_status()
        if status and all(s in ("RUNNING", "DEPLOY_FAILED") for s in status.values()):
            break
        time.sleep(3)
    out = [
        Check(
            "Serve applications RUNNING",
            bool(status) and all(s == "RUNNING" for s in status.values()),
            str(status),
        )
    ]
    pair = settings.pairs[0]
    answer_detail, answered = "no answer", False
    while time.monotonic() < deadline and not answered:
        try:
            answer = httpx.get(f"{base_url}/v1/predictions/{pair}", timeout=10, trust_env=False)
            answered = answer.status_code == 200
            answer_detail = f"{answer.status_code} {answer.text[:160]}"
        except httpx.HTTPError as exc:
            answer_detail = f"{type(exc).__name__}: {exc}"
        if not answered:
            time.sleep(3)
    out.append(Check(f"GET /v1/predictions/{pair}", answered, answer_detail))
    published: dict[str, int] = {}
    while time.monotonic() < deadline:
        published = {
            "topic predictions": topic_messages(settings, topics.PREDICTIONS),
            "table predictions": row_counts(settings.db_url, ("predictions",))["predictions"],
        }
        if all(v > 0 for v in published.values()):
            break
        time.sleep(3)
    say(f"published: {published}")
    for name, count in published.items():
        out.append(Check(f"Serve publishes to {name}", count > 0, f"{count} messages/rows"))
    return out


def memory_check(usage: Usage) -> Check:
    limit = "enforced" if usage.enforced else "NOT enforced (measured only)"
    return Check(
        f"pod {usage.pod} below its memory limit",
        usage.below_limit and usage.restarts == usage.kills,
        f"peak PSS {usage.peak_pss_bytes / MIB:.0f} MiB of {usage.limit_bytes / MIB:.0f} MiB "
        f"({limit}), {usage.restarts} restarts ({usage.kills} after a node failure), "
        f"{usage.oom_kills} OOM kills",
    )
