"""LocalModels: each champion version loaded once, older versions of a model dropped."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from cryptopred_serving.champion_watch import Champion
from cryptopred_serving.local_models import LocalModels


class FakePredictor:
    def __init__(self, champion: Champion) -> None:
        self.model_id = champion.model_id

    def predict_records(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"model": self.model_id, "rows": len(rows)}]


def champion(name: str, version: str) -> Champion:
    return Champion(name, version, None)


def test_each_version_loads_once_even_when_asked_for_concurrently() -> None:
    loads: list[str] = []

    def slow_loader(c: Champion) -> FakePredictor:
        loads.append(c.model_id)
        time.sleep(0.05)
        return FakePredictor(c)

    models = LocalModels(slow_loader)
    btc = champion("BTC-USD-60s", "1")
    assert models.get(btc) is None
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(models.load(btc))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == ["BTC-USD-60s/1"]
    assert len({id(m) for m in got}) == 1 and models.get(btc) is got[0]
    assert models.predict(btc, [{}, {}]) == [{"model": "BTC-USD-60s/1", "rows": 2}]


def test_a_new_version_replaces_the_old_one_of_that_model_only() -> None:
    models = LocalModels(FakePredictor)
    old_btc, eth = champion("BTC-USD-60s", "1"), champion("ETH-USD-60s", "4")
    kept = models.load(old_btc)
    models.load(eth)
    assert models.loaded() == ["BTC-USD-60s/1", "ETH-USD-60s/4"]
    models.predict(champion("BTC-USD-60s", "2"), [])  # a promotion
    assert models.loaded() == ["BTC-USD-60s/2", "ETH-USD-60s/4"]
    assert kept.predict_records([]) == [{"model": "BTC-USD-60s/1", "rows": 0}]  # still usable


def test_a_failed_load_leaves_nothing_behind_and_is_retried() -> None:
    attempts: list[str] = []

    def flaky(c: Champion) -> FakePredictor:
        attempts.append(c.model_id)
        if len(attempts) == 1:
            raise OSError("registry unreachable")
        return FakePredictor(c)

    models = LocalModels(flaky)
    btc = champion("BTC-USD-60s", "1")
    with pytest.raises(OSError, match="unreachable"):
        models.load(btc)
    assert models.loaded() == []
    assert models.load(btc).model_id == "BTC-USD-60s/1"
    assert attempts == ["BTC-USD-60s/1", "BTC-USD-60s/1"]


def test_the_thread_setup_runs_in_the_predicting_thread() -> None:
    setups: list[str] = []
    models = LocalModels(FakePredictor, lambda: setups.append(threading.current_thread().name))
    btc = champion("BTC-USD-60s", "1")
    worker = threading.Thread(target=models.predict, args=(btc, []), name="worker-1")
    worker.start()
    worker.join()
    assert setups == ["worker-1"]


def test_a_loaded_model_is_served_while_another_version_loads() -> None:
    release = threading.Event()

    def loader(c: Champion) -> FakePredictor:
        if c.version == "2":
            assert release.wait(5)
        return FakePredictor(c)

    models = LocalModels(loader)
    eth, new_btc = champion("ETH-USD-60s", "1"), champion("BTC-USD-60s", "2")
    models.load(eth)
    loading = threading.Thread(target=models.load, args=(new_btc,))
    loading.start()
    time.sleep(0.05)  # the new version's load now holds the lock
    answered: list[Any] = []
    reader = threading.Thread(target=lambda: answered.append(models.predict(eth, [])))
    reader.start()
    reader.join(2)
    before_the_load_ended = list(answered)
    release.set()
    loading.join()
    reader.join()
    assert before_the_load_ended == [[{"model": "ETH-USD-60s/1", "rows": 0}]]
