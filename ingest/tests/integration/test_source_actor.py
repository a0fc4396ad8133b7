import time

import pytest

from cryptopred_core.records import Trade, decode
from cryptopred_ingest.actors import start_source_actor
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.sources.factory import SourceSpec
from cryptopred_ingest.sources.synthetic import generate
from cryptopred_testsupport.readback import read_all

pytestmark = pytest.mark.integration


def test_synthetic_source_as_named_ray_actor(broker, ray_session, unique):
    ray = ray_session
    pair = f"R{unique[:6].upper()}/EUR"
    settings = IngestSettings(**broker.model_dump(), actor_max_restarts=2)
    spec = SourceSpec("synthetic", pairs=(pair,), days=0.02, seed=11)
    name = f"ingest-test-{unique}"
    actor = start_source_actor(spec, settings, name)
    assert ray.get(actor.wait.remote(60.0)) is True
    stats = ray.get(ray.get_actor(name, namespace="cryptopred").stats.remote())
    expected = [t for b in generate([pair], 0.02, 11) for t in b.trades]
    assert stats["last_error"] is None and stats["done"] is True
    assert stats["trades"] == len(expected) > 100 and stats["rejects"] == 0
    assert stats["metrics_trades"] == stats["trades"]  # all counted into ray.util.metrics
    deadline = time.monotonic() + 30
    while True:
        got = [decode(v, Trade) for k, v in read_all(broker, "trades") if k == pair.encode()]
        if len(got) >= len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got == expected
    ray.kill(actor)


def test_a_failing_source_ends_its_process_and_restarts_with_its_last_error(
    broker, ray_session, unique, tmp_path
):
    """A replay of a file that is gone fails on every start: each failure ends the actor's
    process (Ray restarts it) and its status shows the restarts and the last error."""
    ray = ray_session
    settings = IngestSettings(**{**broker.model_dump(), "crash_backoff_max_s": 1.0})
    missing = tmp_path / "gone.jsonl"
    spec = SourceSpec("replay-jsonl", path=str(missing))
    name = f"ingest-fail-{unique}"
    actor = start_source_actor(spec, settings, name)

    def status() -> dict:
        try:
            return dict(ray.get(actor.stats.remote(), timeout=10))
        except ray.exceptions.RayError:  # between a failure and the restart
            return {}

    pids = set()
    deadline = time.monotonic() + 120
    seen: dict = {}
    while time.monotonic() < deadline:
        seen = status()
        if seen:
            pids.add(seen["pid"])
        if seen.get("restarts", 0) >= 2 and len(pids) >= 2:
            break
        time.sleep(0.2)
    assert seen.get("restarts", 0) >= 2, seen
    assert "FileNotFoundError" in str(seen.get("last_error")), seen
    assert len(pids) >= 2  # new processes, not a thread that ended in the same one
    ray.kill(actor, no_restart=True)
