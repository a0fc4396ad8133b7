"""`cryptopred train` end to end on real PostgreSQL, a real MLflow server and a local Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from cryptopred_core.settings import Settings
from cryptopred_training.cli import app
from cryptopred_training.predictor import OUTPUT_COLUMNS
from cryptopred_training.synthetic import synthetic_indicator_frame

from .conftest import write_rows

pytestmark = pytest.mark.integration

HORIZONS = "60,300"


def _pair(unique: str) -> str:
    return f"T{unique[:6].upper()}/USD"


def _train(env: dict[str, str], pair: str) -> Any:
    args = ["--pair", pair, "--candle-seconds", "60", "--horizons", HORIZONS, "--workers", "1"]
    return CliRunner().invoke(app, args, env=env)


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_planted_signal_becomes_champion_with_a_complete_run(
    postgres: Settings,
    mlflow_server: Settings,
    ray_session: Any,
    train_env: dict[str, str],
    unique: str,
    tmp_path: Path,
) -> None:
    import mlflow

    pair = _pair(unique)
    frame = synthetic_indicator_frame(2500, pair=pair, ar_lag=15, ar_coef=0.7, seed=1)
    write_rows(postgres, frame)
    # an open (non-final) row after the last one must be ignored
    open_row = frame.iloc[[-1]].copy()
    open_row["window_start_ms"] += 60_000
    open_row["window_end_ms"] += 60_000
    open_row["final"] = False
    write_rows(postgres, open_row)

    done = _train(train_env, pair)
    assert done.exit_code == 0, done.output
    assert "epoch" in done.output and "champion" in done.output
    # MLflow's links, registry lines and schema hints stay out of the user's terminal
    assert "View run" not in done.output and "Successfully registered" not in done.output

    name = pair.replace("/", "-") + "-60s"
    client = _client(mlflow_server.mlflow_uri)
    version = client.get_model_version_by_alias(name, "champion")
    tags = version.tags
    first_ms = int(frame["window_start_ms"].iloc[0])
    last_end_ms = int(frame["window_end_ms"].iloc[-1])
    assert tags["window_steps"] == "24" and tags["horizon_seconds"] == HORIZONS
    assert tags["candle_seconds"] == "60" and tags["pair"] == pair
    assert (tags["trained_from_ms"], tags["trained_to_ms"]) == (str(first_ms), str(last_end_ms))
    assert tags["decision"] == "champion" and tags["reason"]
    assert float(tags["test_mae_60s"]) > 0 and float(tags["test_mae_300s"]) > 0

    run = client.get_run(version.run_id)
    metrics, params = run.data.metrics, run.data.params
    assert metrics["test_transformer_mae_60s"] < metrics["test_persistence_mae_60s"]
    assert metrics["test_transformer_mae_60s"] < metrics["test_ridge_mae_60s"]
    assert metrics["wf_transformer_mae_60s"] < metrics["wf_persistence_mae_60s"]
    assert float(tags["test_mae_60s"]) == pytest.approx(metrics["test_transformer_mae_60s"])
    assert params["window_steps"] == "24" and params["max_epochs"] == "6"
    assert params["trained_from_ms"] == str(first_ms) and params["n_rows"] == "2500"
    assert params["decision"] == "champion" and params["num_workers"] == "1"
    history = client.get_metric_history(version.run_id, "val_loss")
    assert len(history) >= 2 and [m.step for m in history] == list(range(len(history)))
    assert len(client.get_metric_history(version.run_id, "train_loss")) == len(history)

    artifacts = {a.path for a in client.list_artifacts(version.run_id, "plots")}
    assert {
        "plots/loss_curves.png",
        "plots/predicted_vs_actual_60s.png",
        "plots/reliability.png",
        "plots/pit_histogram.png",
        "plots/skill_by_horizon.png",
    } <= artifacts
    local = client.download_artifacts(version.run_id, "data_validation.json", str(tmp_path))
    summary = json.loads(Path(local).read_text())
    assert summary["n_rows"] == 2500 and summary["start_ms"] == first_ms

    checkpoints = list((tmp_path / "ray_results").glob("*/checkpoint_*/state.pt"))
    assert checkpoints, "rank 0 wrote no Ray Train checkpoint"

    mlflow.set_tracking_uri(mlflow_server.mlflow_uri)
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    recent = frame.iloc[-30:].sample(frac=1.0, random_state=0)  # any order
    predicted = model.predict(recent)
    assert list(predicted.columns) == list(OUTPUT_COLUMNS)
    assert predicted["horizon_seconds"].tolist() == [60, 300]
    assert (predicted["window_end_ms"] == last_end_ms).all()
    assert (predicted["lower"] <= predicted["upper"]).all()

    # A second run on the same rows scores the champion (loaded with pyfunc) on its test split.
    again = _train(train_env, pair)
    assert again.exit_code == 0, again.output
    second = max(
        (v for v in client.search_model_versions(f"name='{name}'")), key=lambda v: int(v.version)
    )
    assert second.version != version.version
    second_metrics = client.get_run(second.run_id).data.metrics
    champion_loss = second_metrics["champion_test_loss"]
    assert champion_loss == pytest.approx(float(tags["test_loss"]), rel=1e-3)
    new_loss = second_metrics["gate_test_loss"]
    now_champion = client.get_model_version_by_alias(name, "champion").version
    transformers = [
        v
        for v in client.search_model_versions(f"name='{name}'")
        if v.tags.get("model_kind") == "transformer"
    ]
    second = max(transformers, key=lambda v: int(v.version))
    if second.tags["decision"] == "champion":
        assert new_loss < champion_loss and now_champion == second.version
    else:
        assert now_champion == version.version
        assert client.get_model_version_by_alias(name, "challenger").version == second.version


def test_random_walk_is_not_promoted(
    postgres: Settings,
    mlflow_server: Settings,
    ray_session: Any,
    train_env: dict[str, str],
    unique: str,
) -> None:
    pair = _pair(unique)
    write_rows(postgres, synthetic_indicator_frame(2500, pair=pair, seed=2))

    done = _train(train_env, pair)
    assert done.exit_code == 0, done.output

    name = pair.replace("/", "-") + "-60s"
    client = _client(mlflow_server.mlflow_uri)
    version = client.get_model_version_by_alias(name, "challenger")
    assert version.tags["decision"] == "challenger" and version.tags["model_kind"] == "transformer"
    run = client.get_run(version.run_id)
    assert run.data.params["promotion_reason"] == version.tags["reason"]
    assert run.data.tags["decision"] == "challenger"
    # the best volatility baseline is registered from the same run and serves
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.version == client.get_model_version_by_alias(name, "baseline").version
    assert champion.run_id == version.run_id and champion.version != version.version
    kind = champion.tags["baseline"]
    assert champion.tags["model_kind"] == "baseline" and kind in ("empirical", "ewma", "garch")
    assert f"{kind} serves" in version.tags["reason"]
    assert run.data.params["served"] == "baseline" and run.data.params["best_baseline"] == kind
    assert 0 <= run.data.metrics["gate_test_dm_p"] <= 1
    from cryptopred_training.baseline_predictor import BaselinePredictor
    from cryptopred_training.registry import load_registered_predictor

    served = load_registered_predictor(mlflow_server.mlflow_uri, name, champion.version)
    assert isinstance(served, BaselinePredictor) and served.kind == kind
    assert champion.tags["window_steps"] == str(served.window_steps)
    frame = synthetic_indicator_frame(2500, pair=pair, seed=2)
    forecasts = served.predict_records(frame.tail(served.window_steps).to_dict("records"))
    assert all(f["lower"] < f["predicted_close"] < f["upper"] for f in forecasts)


def test_gaps_exit_non_zero_with_the_reason(
    postgres: Settings, train_env: dict[str, str], unique: str
) -> None:
    pair = _pair(unique)
    frame = synthetic_indicator_frame(1000, pair=pair, seed=3)
    write_rows(postgres, pd.concat([frame.iloc[:400], frame.iloc[407:]]))

    done = subprocess.run(
        [str(Path(sys.executable).with_name("cryptopred")), "train", "--pair", pair],
        env={**train_env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: bad training data: gaps in the time grid: 7 missing 60 s candles"]
