"""The pyfunc wrapper and the champion scoring, without an MLflow server."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from cryptopred_training.baseline_predictor import BaselinePredictor
from cryptopred_training.champion_scoring import forecaster_loss
from cryptopred_training.config import TrainConfig
from cryptopred_training.flow import prepare_data, run_training
from cryptopred_training.mlflow_model import PREDICTOR_ARTIFACT, PricePredictorModel
from cryptopred_training.model_card import CARD_ARTIFACT, write_card
from cryptopred_training.predictor import OUTPUT_COLUMNS
from cryptopred_training.synthetic import synthetic_indicator_frame
from cryptopred_training.tracking import baseline_tags, evaluation_metrics, version_tags

CONFIG = TrainConfig(
    horizon_seconds=(60, 300),
    window_steps=12,
    batch_size=64,
    max_epochs=1,
    walk_forward_folds=0,
    min_rows=100,
    baseline_history_steps=240,
)


@pytest.fixture(scope="module")
def trained():
    frame = synthetic_indicator_frame(1500, seed=4)
    return frame, run_training(frame, CONFIG)


def test_pyfunc_wrapper_predicts_like_the_predictor(trained, tmp_path: Path) -> None:
    frame, outcome = trained
    path = outcome.predictor.save(tmp_path / "predictor.pt")
    card = write_card(outcome.predictor, path, tmp_path)
    model = PricePredictorModel()
    model.load_context(
        SimpleNamespace(artifacts={PREDICTOR_ARTIFACT: str(path), CARD_ARTIFACT: str(card)})
    )
    rows = frame.iloc[-20:].sample(frac=1.0, random_state=1)
    out = model.predict(None, rows)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    expected = outcome.predictor.predict(frame.iloc[-20:])
    assert out["predicted_close"].tolist() == pytest.approx(expected["predicted_close"].tolist())


def test_defining_the_wrapper_raises_no_mlflow_warning() -> None:
    """MLflow checks predict's type hints when the class is defined (warning when there are
    none); the DataFrame hint keeps the logged signature as the schema, without a warning."""
    code = (
        "import warnings, mlflow.pyfunc\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    import cryptopred_training.mlflow_model\n"
        "print('\\n'.join(str(w.message) for w in seen))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "type hint" not in done.stdout.lower(), done.stdout


def test_pyfunc_wrapper_serves_the_baseline_from_its_json_state(trained, tmp_path: Path) -> None:
    frame, outcome = trained
    baseline = outcome.baseline_predictor
    path = baseline.save(tmp_path / "baseline.json")
    card = write_card(baseline, path, tmp_path)
    model = PricePredictorModel()
    model.load_context(
        SimpleNamespace(artifacts={PREDICTOR_ARTIFACT: str(path), CARD_ARTIFACT: str(card)})
    )
    assert isinstance(model.predictor, BaselinePredictor)
    recent = frame.iloc[-baseline.window_steps :]
    got = model.predict(None, recent)
    expected = baseline.predict(recent)
    assert list(got.columns) == list(OUTPUT_COLUMNS)
    assert (got["predicted_return"] == 0).all()
    assert (got["lower"] < got["predicted_close"]).all()
    assert (got["predicted_close"] < got["upper"]).all()
    assert got.equals(expected)


def test_champion_scoring_matches_the_gate_on_the_same_split(trained) -> None:
    frame, outcome = trained
    data = prepare_data(frame, CONFIG)
    test = outcome.split.test
    loss = forecaster_loss(outcome.predictor, frame, data, test, CONFIG)
    assert loss == pytest.approx(outcome.gate[0].loss, rel=1e-4)
    # the baseline, rebuilt from its saved state, scores as the gate's best baseline did
    reloaded = BaselinePredictor.from_state(outcome.baseline_predictor.state())
    baseline_loss = forecaster_loss(reloaded, frame, data, test, CONFIG)
    assert baseline_loss == pytest.approx(outcome.gate[0].baseline_loss, rel=1e-9)
    other = replace(CONFIG, horizon_seconds=(60, 900))
    assert forecaster_loss(outcome.predictor, frame, data, test, other) is None


def test_version_tags_follow_the_contract(trained) -> None:
    frame, outcome = trained
    tags = version_tags(outcome, CONFIG, "BTC/USD")
    assert tags["window_steps"] == "12" and tags["horizon_seconds"] == "60,300"
    assert tags["candle_seconds"] == "60" and tags["pair"] == "BTC/USD"
    assert tags["trained_from_ms"] == str(frame["window_start_ms"].iloc[0])
    assert tags["trained_to_ms"] == str(frame["window_end_ms"].iloc[-1])
    assert tags["decision"] in ("champion", "challenger") and tags["reason"]
    assert float(tags["test_mae_300s"]) == outcome.test_metrics["transformer"]["mae_300s"]
    metrics = evaluation_metrics(outcome)
    assert metrics["test_persistence_mae_60s"] == outcome.test_metrics["persistence"]["mae_60s"]
    assert not any(k.startswith("wf_") for k in metrics)
    assert tags["model_kind"] == "transformer"
    assert float(tags["test_loss"]) == outcome.gate[0].loss


def test_the_baseline_version_has_its_own_shape_and_scores(trained) -> None:
    _, outcome = trained
    tags = baseline_tags(outcome, CONFIG, "BTC/USD")
    kind = outcome.baseline_predictor.kind
    assert tags["model_kind"] == "baseline" and tags["baseline"] == kind
    assert tags["window_steps"] == "240" and tags["horizon_seconds"] == "60,300"
    assert float(tags["test_loss"]) == outcome.gate[0].baseline_loss
    assert float(tags["test_mae_60s"]) == outcome.test_metrics[kind]["mae_60s"]
    served = outcome.decision.served == "baseline"
    assert tags["decision"] == ("champion" if served else "baseline")
