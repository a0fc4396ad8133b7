"""A server loads and runs a model without Ray Tune, Ray Data or matplotlib: this test writes a
transformer and a baseline model as training logs them (state file and card), then a fresh
interpreter imports the serving application and the model code (predictor, features, network,
model card, registry), loads each model through its card into `LocalModels`, predicts, and
reports what it imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cryptopred_training.baseline_predictor import BaselinePredictor
from cryptopred_training.features import FEATURE_COLUMNS, Normalizer, compute_targets
from cryptopred_training.model_card import Forecaster, write_card
from cryptopred_training.models.transformer import CausalTransformer, TransformerSpec
from cryptopred_training.models.volatility import BASELINE_KINDS, VolatilityBaselines
from cryptopred_training.predictor import PricePredictor
from cryptopred_training.synthetic import synthetic_indicator_frame

FORBIDDEN = ("ray.tune", "ray.data", "matplotlib")
HORIZONS_S = (60, 300)

SERVER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import cryptopred_serving.app
    from cryptopred_serving.champion_watch import Champion
    from cryptopred_serving.local_models import LocalModels, load_from_mlflow
    from cryptopred_training.model_card import load_model_dir
    from cryptopred_training.registry import load_registered_predictor

    folder = Path(sys.argv[1])
    rows = json.loads((folder / "rows.json").read_text())
    models = LocalModels(lambda c: load_model_dir(folder / c.name, c.model_id))
    forecasts = {
        name: models.predict(Champion(name, "1", None), rows)
        for name in ("transformer", "baseline")
    }
    assert callable(load_from_mlflow("http://127.0.0.1:1")) and callable(load_registered_predictor)
    horizons = {name: [f["horizon_seconds"] for f in got] for name, got in forecasts.items()}
    json.dump({"horizons": horizons, "modules": sorted(sys.modules)}, sys.stdout)
    """
)


def _models(folder: Path) -> None:
    """A transformer and a baseline model under `folder`, with indicator rows to predict on."""
    torch.manual_seed(0)
    n = len(FEATURE_COLUMNS)
    spec = TransformerSpec(n_features=n, n_horizons=2, window_steps=8, d_model=8, d_ff=16)
    transformer = PricePredictor(
        spec=spec,
        state_dict=CausalTransformer(spec).state_dict(),
        normalizer=Normalizer(mean=[0.0] * n, std=[1.0] * n, target_scale=[0.01, 0.02]),
        horizon_seconds=HORIZONS_S,
        candle_seconds=60,
    )
    frame = synthetic_indicator_frame(400, seed=3)
    close = frame["close"].to_numpy(np.float64)
    steps = (1, 5)
    train = np.arange(50, 300)
    targets = compute_targets(close, steps)
    fitted = VolatilityBaselines.fit(close, train, targets[train], steps, (0.1, 0.5, 0.9), 40)
    baseline = BaselinePredictor(
        kind=BASELINE_KINDS[0],
        model=fitted.get(BASELINE_KINDS[0]),
        horizon_seconds=HORIZONS_S,
        candle_seconds=60,
        history_steps=40,
    )
    predictors: dict[str, tuple[Forecaster, str]] = {
        "transformer": (transformer, "predictor.pt"),
        "baseline": (baseline, "predictor.json"),
    }
    for name, (predictor, state_file) in predictors.items():
        artifacts = folder / name / "artifacts"
        artifacts.mkdir(parents=True)
        write_card(predictor, predictor.save(artifacts / state_file), artifacts)
    (folder / "rows.json").write_text(frame.to_json(orient="records"))


@pytest.fixture(scope="module")
def server_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("models")
    _models(folder)
    done = subprocess.run(
        [sys.executable, "-c", SERVER, str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_the_server_process_loads_and_predicts_with_each_model(
    server_report: dict[str, Any],
) -> None:
    assert server_report["horizons"] == {"transformer": [60, 300], "baseline": [60, 300]}
    modules = set(server_report["modules"])
    assert {"torch", "ray.serve", "cryptopred_training.model_card"} <= modules


def test_the_server_process_imports_no_tune_data_or_matplotlib(
    server_report: dict[str, Any],
) -> None:
    loaded = [
        m
        for m in server_report["modules"]
        if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)
    ]
    assert loaded == []
