"""How the retrain scheduler notices a demotion, and that a demotion run is no training run."""

from __future__ import annotations

from types import SimpleNamespace

from cryptopred_training.retrain.history import last_run
from cryptopred_training.retrain.scheduler import ModelState, noticed_demotion

NOW_MS = 1_700_000_000_000


def seen(champion: str | None, tag_ms: int | None = None) -> ModelState:
    return ModelState("BTC/USD", 60, champion=champion, observed=True, demotion_tag_ms=tag_ms)


def test_the_alias_gone_is_a_demotion_now() -> None:
    assert noticed_demotion(seen("3"), None, None, NOW_MS) == NOW_MS


def test_the_alias_moved_with_a_new_demotion_tag_is_a_demotion_at_the_tag_time() -> None:
    assert noticed_demotion(seen("3"), "2", NOW_MS - 5000, NOW_MS) == NOW_MS - 5000
    assert noticed_demotion(seen("3", tag_ms=NOW_MS - 9000), "2", NOW_MS - 5000, NOW_MS) == (
        NOW_MS - 5000
    )


def test_a_promotion_or_an_old_tag_is_no_demotion() -> None:
    assert noticed_demotion(seen("3"), "4", None, NOW_MS) is None  # a new champion, no tag
    old = NOW_MS - 86_400_000
    assert noticed_demotion(seen("3", tag_ms=old), "4", old, NOW_MS) is None
    assert noticed_demotion(seen("3"), "3", NOW_MS - 5000, NOW_MS) is None  # not moved
    assert noticed_demotion(seen(None), "2", NOW_MS - 5000, NOW_MS) is None  # a first champion


def test_the_first_observation_only_records() -> None:
    fresh = ModelState("BTC/USD", 60)
    assert noticed_demotion(fresh, "2", NOW_MS - 5000, NOW_MS) is None
    assert noticed_demotion(fresh, None, None, NOW_MS) is None


def run(run_id: str, started_ms: int, **tags: str) -> SimpleNamespace:
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id, start_time=started_ms, status="FINISHED"),
        data=SimpleNamespace(tags=tags),
    )


class FakeClient:
    def __init__(self, runs: list[SimpleNamespace]) -> None:
        self.runs = runs

    def get_experiment_by_name(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(experiment_id="1")

    def search_runs(self, ids, filter_string, order_by, max_results):  # type: ignore[no-untyped-def]
        # the one filter last_run sends, as the tracking server applies it
        assert filter_string == "tags.`mlflow.parentRunId` IS NULL"
        top_level = [r for r in self.runs if "mlflow.parentRunId" not in r.data.tags]
        return top_level[:max_results]


def test_the_last_run_skips_demotion_runs() -> None:
    runs = [
        run("d", NOW_MS, event="demotion"),
        run("t", NOW_MS - 60_000, decision="champion", trigger="schedule"),
    ]
    record = last_run(FakeClient(runs), "BTC-USD-60s")
    assert record is not None and record.run_id == "t" and record.decision == "champion"
    assert last_run(FakeClient(runs[:1]), "BTC-USD-60s") is None


def test_the_last_run_is_no_nested_tune_trial() -> None:
    runs = [
        run("trial", NOW_MS, **{"mlflow.parentRunId": "t"}),
        run("t", NOW_MS - 60_000, decision="challenger"),
    ]
    record = last_run(FakeClient(runs), "BTC-USD-60s")
    assert record is not None and record.run_id == "t"
