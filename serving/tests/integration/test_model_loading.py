"""Serving's model loader on a real MLflow server: registered versions are loaded as data.

A version whose artifacts would run code when unpickled is refused with a clear error and runs
nothing; a version trained and registered as usual loads and predicts as MLflow's pyfunc does.
"""

import hashlib
import json
import pickle
import time
from pathlib import Path

import pytest
import torch

from cryptopred_serving.champion_watch import Champion, ChampionWatcher
from cryptopred_serving.local_models import LocalModels, load_from_mlflow
from cryptopred_testsupport.serving import train_and_register, wait_for
from cryptopred_training.model_card import FORMAT_NAME, FORMAT_VERSION, UnknownModelFormatError
from cryptopred_training.synthetic import synthetic_indicator_frame

pytestmark = pytest.mark.integration

PAIR = "MLD/USD"
NAME = "MLD-USD-60s"


class Marker:
    """Unpickling it writes `path`: the code a pickled model could run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "unpickled"))


def _register_folder(mlflow_uri: str, folder: Path) -> str:
    """Log `folder` as a run's `model` artifact, register it as a version of NAME, make it
    champion; its version."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(mlflow_uri)
    experiment = mlflow.set_experiment(f"{NAME}-planted")
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        mlflow.log_artifacts(str(folder), "model")
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    version = client.create_model_version(NAME, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(NAME, "champion", version.version)
    return str(version.version)


def _pickled_pyfunc(folder: Path, marker: Path) -> Path:
    """A cloudpickle-style pyfunc model: MLmodel and a python_model.pkl that writes `marker`."""
    folder.mkdir()
    (folder / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"
        "    python_model: python_model.pkl\n"
    )
    (folder / "python_model.pkl").write_bytes(pickle.dumps(Marker(marker)))
    return folder


def _pickled_state_with_card(folder: Path, marker: Path) -> Path:
    """A model whose card is well-formed and whose state file, with the card's hash, is a
    pickle that writes `marker`."""
    (folder / "artifacts").mkdir(parents=True)
    state = folder / "artifacts" / "predictor.pt"
    torch.save({"spec": Marker(marker)}, state)
    card = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "predictor_path": "artifacts/predictor.pt",
        "predictor_sha256": hashlib.sha256(state.read_bytes()).hexdigest(),
        "window_steps": 16,
        "horizon_seconds": [60],
        "candle_seconds": 60,
        "feature_columns": ["ret_1"],
    }
    (folder / "artifacts" / "cryptopred-model.json").write_text(json.dumps(card))
    return folder


def test_the_marker_pickle_runs_code_when_unpickled(tmp_path: Path) -> None:
    """The planted artifacts are dangerous: unpickling them writes the marker."""
    marker = tmp_path / "sanity"
    pickle.loads(pickle.dumps(Marker(marker)))
    assert marker.read_text() == "unpickled"


def test_versions_that_would_run_code_are_refused_and_the_champion_stays(
    mlflow_server, tmp_path: Path
) -> None:
    import mlflow

    uri = mlflow_server.mlflow_uri
    frame = synthetic_indicator_frame(300, pair=PAIR, seed=5)
    good = train_and_register(uri, frame, seed=0, pair=PAIR)
    load = load_from_mlflow(uri)

    # a normally trained version loads through the serving loader and predicts as pyfunc does
    rows = frame.iloc[-20:].to_dict("records")
    predictor = load(Champion(NAME, good, None))
    mlflow.set_tracking_uri(uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}/{good}")
    expected = pyfunc.predict(frame.iloc[-20:])["predicted_close"].tolist()
    assert [r["predicted_close"] for r in predictor.predict_records(rows)] == pytest.approx(
        expected
    )

    models = LocalModels(load)
    watcher = ChampionWatcher(uri, [PAIR], [60], 0.5, models.load)
    try:
        wait_for(lambda: watcher.get(PAIR, 60) is not None, 60, "the good champion")
        assert watcher.get(PAIR, 60).version == good

        cases = [
            (_pickled_pyfunc, "no model card"),
            (_pickled_state_with_card, "is not a weights-only state"),
        ]
        for i, (build, words) in enumerate(cases):
            marker = tmp_path / f"marker-{i}"
            bad = _register_folder(uri, build(tmp_path / f"model-{i}", marker))
            with pytest.raises(UnknownModelFormatError) as err:
                load(Champion(NAME, bad, None))
            assert f"model {NAME}/{bad} is not a cryptopred model of a known format" in str(
                err.value
            )
            assert words in str(err.value)
            time.sleep(1.5)  # the watcher polls every 0.5 s and tries to load the new alias
            assert watcher.get(PAIR, 60).version == good
            assert models.loaded() == [f"{NAME}/{good}"]
            assert not marker.exists(), "loading ran code from the registry"
    finally:
        watcher.stop()


def test_a_baseline_version_loads_as_data_and_forecasts_like_its_pyfunc(mlflow_server) -> None:
    """Every run registers its best volatility baseline (alias `baseline`); serving loads it
    from its JSON state and card, and it answers like MLflow's pyfunc of the same version."""
    import mlflow
    from mlflow import MlflowClient

    from cryptopred_training.baseline_predictor import BaselinePredictor

    uri = mlflow_server.mlflow_uri
    pair, name = "MLB/USD", "MLB-USD-60s"
    frame = synthetic_indicator_frame(900, pair=pair, seed=6)
    transformer = train_and_register(uri, frame, seed=0, pair=pair)
    baseline = MlflowClient(tracking_uri=uri).get_model_version_by_alias(name, "baseline")
    assert baseline.version != transformer
    assert baseline.tags["model_kind"] == "baseline"
    predictor = load_from_mlflow(uri)(Champion(name, str(baseline.version), None))
    assert isinstance(predictor, BaselinePredictor)
    assert baseline.tags["window_steps"] == str(predictor.window_steps)
    recent = frame.iloc[-predictor.window_steps :]
    got = predictor.predict_records(recent.to_dict("records"))
    mlflow.set_tracking_uri(uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{baseline.version}")
    expected = pyfunc.predict(recent)
    assert [r["upper"] for r in got] == pytest.approx(expected["upper"].tolist(), rel=1e-12)
    assert all(r["lower"] < r["predicted_close"] < r["upper"] for r in got)
