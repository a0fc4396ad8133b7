"""`cryptopred train --trials 3` end to end: Ray Tune with ASHA on the shared local Ray, the
trials nested under the training run in MLflow, the best trial's model facing the gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cryptopred_core.settings import Settings
from cryptopred_training.cli import app
from cryptopred_training.config import TrainConfig
from cryptopred_training.predictor import PricePredictor
from cryptopred_training.registry import load_registered_predictor
from cryptopred_training.retrain.history import last_run
from cryptopred_training.synthetic import synthetic_indicator_frame
from cryptopred_training.tune_search import SearchSpace, sample_points

from .conftest import write_rows

pytestmark = pytest.mark.integration

TRIALS = 3
SEED = 1


def test_a_search_logs_nested_trials_and_its_best_trial_faces_the_gate(
    postgres: Settings,
    mlflow_server: Settings,
    ray_session: Any,
    train_env: dict[str, str],
    unique: str,
    tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    pair = f"N{unique[:6].upper()}/USD"
    write_rows(postgres, synthetic_indicator_frame(1500, pair=pair, ar_lag=5, ar_coef=0.6, seed=4))
    env = {
        **train_env,
        "CRYPTOPRED_TRAIN_MAX_EPOCHS": "2",
        "CRYPTOPRED_TRAIN_WALK_FORWARD_FOLDS": "1",
        "CRYPTOPRED_TRAIN_TUNE_CONCURRENCY": "2",
        "CRYPTOPRED_TRAIN_SEED": str(SEED),
    }
    report_path = tmp_path / "report.json"
    args = ["--pair", pair, "--horizons", "60,300", "--trials", str(TRIALS)]
    done = CliRunner().invoke(app, [*args, "--report-json", str(report_path)], env=env)
    assert done.exit_code == 0, done.output
    assert f"best of {TRIALS} trials" in done.output

    report = json.loads(report_path.read_text())
    assert report["trials"] == TRIALS and report["tune"]["trials"] == TRIALS
    best = report["tune"]["best"]
    client = MlflowClient(tracking_uri=mlflow_server.mlflow_uri)
    run = client.get_run(report["run_id"])
    params, metrics = run.data.params, run.data.metrics
    assert params["tune_trials"] == str(TRIALS) and params["tune_metric"] == "val_loss"
    assert params["tune_scheduler"] == "AsyncHyperBandScheduler"  # what ASHAScheduler is
    assert params["tune_max_t"] == "2" and params["tune_grace_period"] == "1"

    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'",
    )
    assert len(children) == TRIALS
    # the trials ran exactly the points sampled with the run's seed
    space = SearchSpace.around(TrainConfig(window_steps=24))
    expected = sorted(
        sorted((k, str(v)) for k, v in p.params().items())
        for p in sample_points(space, TRIALS, SEED)
    )
    assert sorted(sorted(c.data.params.items()) for c in children) == expected
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["trial_id"]
        assert child.data.tags["tune_scheduler"] == "AsyncHyperBandScheduler"
        history = client.get_metric_history(child.info.run_id, "val_loss")
        assert 1 <= len(history) <= 2 and [m.step for m in history] == list(range(len(history)))
    winners = [c for c in children if c.data.tags["best_trial"] == "true"]
    assert len(winners) == 1
    winner = winners[0]
    lowest = min(c.data.metrics["best_val_loss"] for c in children)
    assert winner.data.metrics["best_val_loss"] == lowest
    assert metrics["tune_best_val_loss"] == pytest.approx(lowest)
    assert winner.data.tags["trial_id"] == params["tune_best_trial_id"]
    assert {k: str(v) for k, v in best.items()} == winner.data.params

    # the registered transformer is the best trial's configuration, and the gate decided on it
    name = pair.replace("/", "-") + "-60s"
    version = client.get_model_version(name, report["version"])
    assert version.run_id == run.info.run_id
    assert version.tags["window_steps"] == str(best["window_steps"])
    assert version.tags["decision"] == report["decision"] in ("champion", "challenger")
    assert params["decision"] == report["decision"] and params["promotion_reason"]
    assert {"gate_test_loss", "gate_wf_loss", "gate_test_dm_p"} <= set(metrics)
    for key in ("d_model", "n_layers", "n_heads", "window_steps", "learning_rate"):
        assert params[key] == str(best[key]) == params[f"tuned_{key}"]
    predictor = load_registered_predictor(mlflow_server.mlflow_uri, name, report["version"])
    assert isinstance(predictor, PricePredictor)
    spec = predictor.spec
    assert (spec.d_model, spec.n_layers, spec.n_heads, spec.window_steps) == (
        best["d_model"],
        best["n_layers"],
        best["n_heads"],
        best["window_steps"],
    )

    # the walk-forward fold was a Ray Train run of its own; the trials are not the last run
    assert list((tmp_path / "ray_results").glob("*-fold1/checkpoint_*/state.pt"))
    assert list((tmp_path / "ray_results").glob("*-tune"))
    latest = last_run(client, name)
    assert latest is not None and latest.run_id == run.info.run_id
    assert latest.decision == report["decision"] and latest.status == "FINISHED"
