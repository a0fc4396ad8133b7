"""Logging from code and loading registered versions as data, on a SQLite tracking store."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cryptopred_training.champion_scoring import load_champion
from cryptopred_training.mlflow_model import log_price_model
from cryptopred_training.model_card import CARD_PATH, UnknownModelFormatError
from cryptopred_training.registry import alias_version, load_registered_predictor
from cryptopred_training.source import COLUMNS
from cryptopred_training.synthetic import synthetic_indicator_frame

from .test_model_card import Marker, small_predictor


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A SQLite tracking URI and an experiment storing artifacts under tmp_path."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("unit", artifact_location=(tmp_path / "art").as_uri())
    yield uri, experiment
    mlflow.set_tracking_uri(None)


def _log(experiment: str, tmp_path: Path, name: str) -> Any:
    import mlflow

    frame = synthetic_indicator_frame(40, seed=1)
    example = frame[list(COLUMNS)].iloc[-8:].reset_index(drop=True)
    folder = tmp_path / "staging"
    folder.mkdir(exist_ok=True)
    with mlflow.start_run(experiment_id=experiment):
        return log_price_model(
            small_predictor(),
            folder,
            artifact_name="model",
            example=example,
            pip_requirements=["torch"],
            registered_model_name=name,
        )


def test_a_logged_model_has_no_pickle_and_loads_both_ways(tracking, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    uri, experiment = tracking
    info = _log(experiment, tmp_path, "U-USD-60s")
    version = str(info.registered_model_version)
    root = MlflowClient(uri, uri).get_model_version_download_uri("U-USD-60s", version)
    files = {
        p.relative_to(Path(root.removeprefix("file://"))).as_posix()
        for p in Path(root.removeprefix("file://")).rglob("*")
        if p.is_file()
    }
    assert "python_model.pkl" not in files and not any(f.endswith(".pkl") for f in files)
    assert {CARD_PATH, "artifacts/predictor.pt", "pyfunc_code.py"} <= files

    rows = synthetic_indicator_frame(40, seed=1).to_dict("records")
    expected = small_predictor().predict_records(rows)
    assert load_registered_predictor(uri, "U-USD-60s", version).predict_records(rows) == expected
    assert load_champion(uri, "U-USD-60s") is None  # no alias yet
    MlflowClient(uri, uri).set_registered_model_alias("U-USD-60s", "champion", version)
    champion = load_champion(uri, "U-USD-60s")
    assert champion is not None and champion.predict_records(rows) == expected
    pyfunc = mlflow.pyfunc.load_model(f"models:/U-USD-60s/{version}")
    closes = pyfunc.predict(synthetic_indicator_frame(40, seed=1))["predicted_close"].tolist()
    assert closes == pytest.approx([r["predicted_close"] for r in expected])


def test_a_version_without_a_card_is_refused_unread(tracking, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    uri, experiment = tracking
    model = tmp_path / "pickled"
    model.mkdir()
    marker = tmp_path / "marker"
    (model / "python_model.pkl").write_bytes(pickle.dumps(Marker(marker)))
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifacts(str(model), "model")
    client = MlflowClient(uri, uri)
    client.create_registered_model("P-USD-60s")
    version = client.create_model_version(
        "P-USD-60s", f"runs:/{run.info.run_id}/model", run.info.run_id
    ).version
    client.set_registered_model_alias("P-USD-60s", "champion", version)
    assert alias_version(uri, "P-USD-60s", "champion") == str(version)
    assert alias_version(uri, "P-USD-60s", "nothing") is None
    with pytest.raises(UnknownModelFormatError, match=rf"P-USD-60s/{version} .*no model card"):
        load_registered_predictor(uri, "P-USD-60s", str(version))
    assert load_champion(uri, "P-USD-60s") is None  # refused, so not compared
    assert not marker.exists()
