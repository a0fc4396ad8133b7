import time

import pytest

from cryptopred.records import Trade, decode
from cryptopred_ingest.actors import start_source_actor
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.sources.factory import SourceSpec
from cryptopred_ingest.sources.synthetic import generate
from cryptopred_ingest.testing.readback import read_all

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
