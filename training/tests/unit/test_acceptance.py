"""End-to-end on synthetic data: a planted signal is learnt and promoted; a random walk is not,
and the best volatility baseline serves instead."""

import numpy as np
import pytest

from cryptopred_training.config import TrainConfig
from cryptopred_training.flow import gate_rule, predict_returns, prepare_data, run_training
from cryptopred_training.promotion import decide_promotion
from cryptopred_training.synthetic import synthetic_indicator_frame

CONFIG = TrainConfig(
    horizon_seconds=(60, 300),
    window_steps=24,
    batch_size=64,
    max_epochs=10,
    patience=3,
    walk_forward_folds=2,
    walk_forward_min_train_fraction=0.6,
    promotion_margin=0.02,
    seed=1,
)


@pytest.fixture(scope="module")
def planted():
    # r_t = 0.7 r_{t-15} + noise: visible inside a 24-step window, beyond ridge's last 5 steps
    frame = synthetic_indicator_frame(2500, ar_lag=15, ar_coef=0.7, seed=1)
    return frame, run_training(frame, CONFIG)


def test_planted_signal_beats_both_baselines_and_is_promoted(planted):
    _, outcome = planted
    test = outcome.test_metrics
    mae = {name: test[name]["mae_60s"] for name in test}
    assert mae["transformer"] < 0.85 * mae["persistence"]
    assert mae["transformer"] < mae["ridge"]
    wf = outcome.walk_forward
    assert wf is not None and len(wf.folds) == 2
    assert wf.mean["transformer"]["mae_60s"] < wf.mean["persistence"]["mae_60s"]
    assert test["transformer"]["directional_accuracy_60s"] > 0.6
    assert 0.6 < test["transformer"]["coverage_80_60s"] < 0.95
    assert outcome.decision.decision == "champion", outcome.decision.reason
    assert outcome.decision.served == "transformer"
    assert [e.where for e in outcome.gate] == ["test", "walk-forward"]
    assert all(e.p_value < CONFIG.promotion_p_value for e in outcome.gate)
    # the current champion is better on this test split: the transformer stays challenger
    better = 0.9 * outcome.gate[0].loss
    kept = decide_promotion(list(outcome.gate), gate_rule(CONFIG), champion_loss=better)
    assert (kept.decision, kept.served) == ("challenger", "keep")


def test_predictor_matches_the_training_flow_on_the_last_window(planted):
    frame, outcome = planted
    data = prepare_data(frame, CONFIG)
    end = int(outcome.split.test[-1])
    expected = predict_returns(outcome.models, data, np.array([end]), CONFIG)["transformer"][0]
    rows = frame.iloc[: end + 1].tail(40)
    got = outcome.predictor.predict(rows)
    assert got["horizon_seconds"].tolist() == [60, 300]
    np.testing.assert_allclose(got["predicted_return"], expected[:, 1], rtol=1e-4, atol=1e-7)
    close = frame["close"].iloc[end]
    np.testing.assert_allclose(got["lower"], close * np.exp(expected[:, 0]), rtol=1e-6)
    assert got["window_end_ms"].iloc[0] == frame["window_end_ms"].iloc[end]


def test_random_walk_is_not_promoted():
    frame = synthetic_indicator_frame(2500, seed=2)
    outcome = run_training(frame, CONFIG)
    test = outcome.test_metrics
    assert not test["transformer"]["mae_60s"] < 0.98 * test["persistence"]["mae_60s"]
    assert outcome.decision.decision == "challenger"
    assert outcome.decision.served == "baseline"
    assert outcome.baseline_predictor.kind == outcome.gate[0].baseline
    assert f"{outcome.gate[0].baseline} serves" in outcome.decision.reason
