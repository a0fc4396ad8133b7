"""demote_champion against a real MLflow server: alias, tags and the logged run."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cryptopred_core.settings import Settings
from cryptopred_training.demotion import demote_champion, demotion_tag_ms
from cryptopred_training.retrain.history import last_run

pytestmark = pytest.mark.integration


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _registered(client: Any, name: str, kinds: list[str]) -> list[str]:
    """A registered model `name` with one version per kind, each from a run of its own."""
    experiment_id = client.create_experiment(name)
    client.create_registered_model(name)
    versions = []
    for kind in kinds:
        run = client.create_run(experiment_id, tags={"decision": "champion"})
        client.set_terminated(run.info.run_id, "FINISHED")
        version = client.create_model_version(
            name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
        )
        client.set_model_version_tag(name, version.version, "model_kind", kind)
        versions.append(str(version.version))
    return versions


def test_demotion_moves_champion_to_the_baseline_tags_and_logs_a_run(
    mlflow_server: Settings,
) -> None:
    uri = mlflow_server.mlflow_uri
    client = _client(uri)
    name = f"DEMO-{uuid.uuid4().hex[:8]}-60s"
    transformer, baseline = _registered(client, name, ["transformer", "baseline"])
    client.set_registered_model_alias(name, "champion", transformer)
    client.set_registered_model_alias(name, "baseline", baseline)
    trained = last_run(client, name)

    reason = "rolling 80 % coverage 0.41 outside 0.70-0.90 for 1800 s"
    assert demote_champion(uri, name, reason, now_ms=1_700_000_000_000) == baseline

    assert str(client.get_model_version_by_alias(name, "champion").version) == baseline
    assert str(client.get_model_version_by_alias(name, "baseline").version) == baseline
    demoted = client.get_model_version(name, transformer)
    assert demoted.tags["demoted_reason"] == reason
    assert demoted.tags["demoted_at_ms"] == "1700000000000"
    assert demotion_tag_ms(client, name) == 1_700_000_000_000

    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.event = 'demotion'")
    assert len(runs) == 1
    params = runs[0].data.params
    assert params == {"reason": reason, "from_version": transformer, "to_version": baseline}
    assert runs[0].info.status == "FINISHED"
    # the scheduler's last training run is not the demotion
    assert last_run(client, name) == trained

    # the champion is the baseline now: nothing more to do
    assert demote_champion(uri, name, "again") is None
    assert len(client.search_runs([experiment.experiment_id], "tags.event = 'demotion'")) == 1


def test_without_a_baseline_alias_nothing_moves(mlflow_server: Settings) -> None:
    uri = mlflow_server.mlflow_uri
    client = _client(uri)
    name = f"DEMO-{uuid.uuid4().hex[:8]}-60s"
    (transformer,) = _registered(client, name, ["transformer"])
    client.set_registered_model_alias(name, "champion", transformer)

    assert demote_champion(uri, name, "coverage out of band") is None
    assert str(client.get_model_version_by_alias(name, "champion").version) == transformer
    assert "demoted_reason" not in client.get_model_version(name, transformer).tags
    assert demotion_tag_ms(client, name) is None
    assert demote_champion(uri, "NO-SUCH-MODEL-60s", "x") is None
