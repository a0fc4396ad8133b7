"""The stream job's entry point with `--live-source`, against the embedded broker, PostgreSQL
and the fake Kraken: live trades reach `trades`, and a killed source actor comes back (Ray
restarts it) and resumes from its state file, repairing what it missed from REST, without
losing or repeating a trade."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cryptopred_core.records import Trade, decode
from cryptopred_core.settings import Settings
from cryptopred_ingest.stream.actors import stop_pipeline
from cryptopred_ingest.stream.job import LIVE_SOURCE_ACTOR, main, stop_live_source
from cryptopred_ingest.stream.settings import load_stream_settings
from cryptopred_testsupport.fake_kraken import FakeKraken
from cryptopred_testsupport.readback import read_all

pytestmark = pytest.mark.integration

TAPE = 300
BEFORE_KILL = 150  # connection 0 plays tape[0:150], then idles until the kill
RESUMED_AT = 200  # connection 1 plays tape[200:300]; 150..199 happen meanwhile (REST only)


def _wait(what: str, done: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = done()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _ids_per_pair(settings: Settings, pairs: list[str]) -> dict[str, list[int]]:
    """Trade ids in topic order per pair (each pair is one key, so one partition)."""
    ids: dict[str, list[int]] = {pair: [] for pair in pairs}
    for key, value in read_all(settings, "trades"):
        pair = (key or b"").decode()
        if pair in ids and value is not None:
            ids[pair].append(decode(value, Trade).trade_id or -1)
    return ids


def test_job_runs_the_live_source_and_a_killed_source_resumes_exactly(
    broker: Settings,
    postgres: Settings,
    ray_session: Any,
    unique: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ray = ray_session
    pairs = [f"LA{unique[:6].upper()}/USD", f"LB{unique[:6].upper()}/EUR"]
    fake = FakeKraken(
        pairs,
        tape_size=TAPE,
        rate_limit_every=0,
        base_ts_ns=time.time_ns() - TAPE * 137 * 1_000_000,
        segments=[(0, BEFORE_KILL, "idle"), (RESUMED_AT, TAPE, "idle")],
        send_interval_s=0.005,
    ).start()
    # The settings a cluster gives the job through the ConfigMap cryptopred-env.
    env = {
        "KAFKA_BOOTSTRAP": broker.bootstrap_servers,
        "DATABASE_URL": postgres.db_url,
        "PAIRS": ",".join(pairs),
        "KRAKEN_WS_URL": fake.ws_url,
        "KRAKEN_REST_URL": fake.rest_url,
        "DATA_DIR": str(tmp_path),
        "RAY_NAMESPACE": f"livefeed-{unique}",
        "GROUP_PREFIX": f"livefeed-{unique}",
        "LIVE_CHECKPOINT_S": "0.2",
        "BACKOFF_INITIAL_S": "0.05",
        "BACKOFF_MAX_S": "0.2",
        "REST_MIN_INTERVAL_S": "0",
        "REST_PAGE_SIZE": str(fake.page_size),
    }
    for name, value in env.items():
        monkeypatch.setenv(f"CRYPTOPRED_{name}", value)
    settings = load_stream_settings(ray_address="auto")
    expected = [t.trade_id for t in fake.tape]
    state_path = tmp_path / "ingest" / "live-state.json"
    try:
        assert main(["--detach", "--live-source"]) == 0
        actor = ray.get_actor(LIVE_SOURCE_ACTOR, namespace=settings.ray_namespace)

        def published(count: int) -> bool:
            return all(len(ids) >= count for ids in _ids_per_pair(broker, pairs).values())

        _wait("the first live trades", lambda: published(BEFORE_KILL))
        stats = ray.get(actor.stats.remote(), timeout=30)
        assert stats["trades"] == BEFORE_KILL * len(pairs) and stats["restarts"] == 0

        def checkpointed() -> bool:
            if not state_path.exists():
                return False
            saved = json.loads(state_path.read_text())
            last = expected[BEFORE_KILL - 1]
            return all(saved.get(p, {}).get("trade_id") == last for p in pairs)

        _wait("the source's state file", checkpointed)
        ray.kill(actor, no_restart=False)  # its process dies; Ray starts it again

        def restarted() -> dict[str, Any] | None:
            try:
                now = ray.get(actor.stats.remote(), timeout=10)
            except ray.exceptions.RayError:  # between the kill and the restart
                return None
            return now if now["pid"] != stats["pid"] else None

        after = _wait("the restarted source", restarted)
        assert after["restarts"] == 1
        _wait("the trades after the restart", lambda: published(TAPE))
        time.sleep(1.0)  # anything repeated would have arrived by now
        got = _ids_per_pair(broker, pairs)
        for pair in pairs:
            # every trade once, in order: the ones the restart missed came from REST
            assert got[pair] == expected, pair
        assert fake.connections == 2 and fake.rest_calls > 0
        repaired = ray.get(actor.stats.remote(), timeout=30)
        assert repaired["gaps_repaired"] == (RESUMED_AT - BEFORE_KILL) * len(pairs)
    finally:
        stop_live_source(settings)
        stop_pipeline(settings, say=lambda _: None)
        fake.stop()
