"""The servable baseline: the forecast served for a window equals training's for that candle."""

import json
from pathlib import Path

import numpy as np
import pytest

from cryptopred_training.baseline_predictor import BaselinePredictor
from cryptopred_training.features import compute_targets
from cryptopred_training.model_card import (
    UnknownModelFormatError,
    load_model_dir,
    write_card,
)
from cryptopred_training.models.volatility import (
    BASELINE_KINDS,
    VolatilityBaselines,
    windowed_recursion,
)
from cryptopred_training.synthetic import synthetic_indicator_frame

Q = (0.1, 0.5, 0.9)
HORIZONS = (60, 300, 900)
STEPS = (1, 5, 15)
HISTORY = 200


@pytest.fixture(scope="module")
def fitted():
    frame = synthetic_indicator_frame(1500, seed=3)
    close = frame["close"].to_numpy(np.float64)
    targets = compute_targets(close, STEPS)
    train = np.arange(300, 1000)
    return frame, close, VolatilityBaselines.fit(close, train, targets[train], STEPS, Q, HISTORY)


def predictor(baselines, kind):
    return BaselinePredictor(
        kind=kind,
        model=baselines.get(kind),
        horizon_seconds=HORIZONS,
        candle_seconds=60,
        history_steps=HISTORY,
    )


def test_windowed_recursion_equals_the_recursion_over_the_last_rows():
    rng = np.random.default_rng(0)
    inputs = rng.random(50)
    got = windowed_recursion(inputs, 0.9, 2.0, history_steps=8)
    for t in (3, 7, 8, 30, 49):
        first = max(0, t - 7)
        state = 2.0
        for s in range(first + 1, t + 1):
            state = 0.9 * state + inputs[s]
        assert got[t] == pytest.approx(state, rel=1e-12), t


@pytest.mark.parametrize("kind", BASELINE_KINDS)
def test_served_forecast_equals_training_for_the_same_candle(fitted, kind):
    frame, close, baselines = fitted
    served = predictor(baselines, kind)
    expected = baselines.predict(close, np.array([1200]))[kind][0]
    rows = frame.iloc[1200 - HISTORY + 1 : 1201].to_dict("records")
    got = served.predict_records(rows[::-1])  # any order
    assert [f["horizon_seconds"] for f in got] == list(HORIZONS)
    last = close[1200]
    np.testing.assert_allclose([f["lower"] for f in got], last * np.exp(expected[:, 0]), rtol=1e-9)
    np.testing.assert_allclose([f["upper"] for f in got], last * np.exp(expected[:, 2]), rtol=1e-9)
    assert all(f["predicted_close"] == last and f["predicted_return"] == 0 for f in got)
    assert got[0]["window_end_ms"] == frame["window_end_ms"].iloc[1200]


def test_a_saved_baseline_loads_through_its_card(fitted, tmp_path: Path):
    frame, _, baselines = fitted
    served = predictor(baselines, "garch")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    state = served.save(artifacts / "baseline.json")
    write_card(served, state, artifacts)
    loaded = load_model_dir(tmp_path, "m/1")
    assert isinstance(loaded, BaselinePredictor) and loaded.window_steps == HISTORY
    rows = frame.iloc[-HISTORY:]
    assert loaded.predict(rows).equals(served.predict(rows))

    raw = json.loads(state.read_text())
    raw["params"]["beta"] = "x"
    state.write_text(json.dumps(raw))
    with pytest.raises(UnknownModelFormatError, match="sha256"):
        load_model_dir(tmp_path, "m/1")
    write_card(served, state, artifacts)  # a card that matches the bad state
    with pytest.raises(UnknownModelFormatError, match="not a baseline state"):
        load_model_dir(tmp_path, "m/1")


def test_too_few_rows_and_bad_closes_are_refused(fitted):
    frame, _, baselines = fitted
    served = predictor(baselines, "ewma")
    with pytest.raises(ValueError, match="need at least 17 indicator rows"):
        served.predict_records(frame.iloc[:16].to_dict("records"))
    rows = frame.iloc[:40].to_dict("records")
    rows[-1]["close"] = None
    with pytest.raises(ValueError, match="close: every row needs a positive finite close"):
        served.predict_records(rows)
    with pytest.raises(ValueError, match="unknown baseline kind 'arima'"):
        BaselinePredictor(
            kind="arima",
            model=baselines.ewma,
            horizon_seconds=HORIZONS,
            candle_seconds=60,
            history_steps=HISTORY,
        )
