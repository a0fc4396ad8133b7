"""The promotion gate: pure rules, and no promotable skill where there is nothing to learn."""

from dataclasses import replace

import numpy as np
import pytest

from cryptopred_training.config import TrainConfig
from cryptopred_training.flow import prepare_data, train_and_decide
from cryptopred_training.promotion import (
    GateEvidence,
    GateRule,
    decide_promotion,
    gate_evidence,
    per_origin_loss,
)
from cryptopred_training.synthetic import synthetic_indicator_frame

RULE = GateRule(p_value=0.05, coverage_low=0.75, coverage_high=0.85)


def evidence(where="test", loss=9.0, baseline_loss=10.0, p=0.01, coverage=(0.8, 0.8)):
    return GateEvidence(where, "pinball", loss, "garch", baseline_loss, -3.0, p, coverage)


GOOD = [evidence(), evidence("walk-forward", loss=9.5)]


def test_champion_when_it_beats_the_best_baseline_significantly_everywhere():
    decision = decide_promotion(GOOD, RULE)
    assert (decision.decision, decision.served) == ("champion", "transformer")
    assert decision.promote and "DM p 0.01" in decision.reason


@pytest.mark.parametrize(
    ("where", "change", "why"),
    [
        (0, {"loss": 10.5}, "test pinball 10.5 does not beat garch 10"),
        (1, {"loss": 10.0}, "walk-forward pinball 10 does not beat garch 10"),
        (0, {"p": 0.2}, "is not significant (DM p 0.2 >= 0.05)"),
        (1, {"p": 0.06}, "is not significant (DM p 0.06 >= 0.05)"),
        (0, {"coverage": (0.8, 0.7)}, "test 80 % coverage 80.0%, 70.0% is outside 75%-85%"),
        (0, {"coverage": (0.9, 0.8)}, "outside 75%-85%"),
    ],
)
def test_a_failed_check_serves_the_best_baseline(where, change, why):
    kwargs = {"where": GOOD[where].where, "loss": GOOD[where].loss, **change}
    failing = list(GOOD)
    failing[where] = evidence(**kwargs)
    decision = decide_promotion(failing, RULE)
    assert (decision.decision, decision.served) == ("challenger", "baseline")
    assert why in decision.reason and decision.reason.endswith("garch serves")


def test_walk_forward_coverage_is_reported_not_gated():
    refit = evidence("walk-forward", loss=9.5, coverage=(0.9, 0.6))
    assert decide_promotion([evidence(), refit], RULE).promote


def test_margin_asks_for_a_larger_gain():
    assert decide_promotion(GOOD, replace(RULE, margin=0.04)).promote  # 9.5 < 9.6
    assert not decide_promotion(GOOD, replace(RULE, margin=0.06)).promote  # 9.5 is not < 9.4


def test_the_champion_stays_when_it_is_better_on_the_same_split():
    assert decide_promotion(GOOD, RULE, champion_loss=9.5).served == "transformer"
    kept = decide_promotion(GOOD, RULE, champion_loss=8.0)
    assert (kept.decision, kept.served) == ("challenger", "keep")
    assert "does not beat the champion's 8" in kept.reason
    losing = [evidence(p=0.5), GOOD[1]]
    assert decide_promotion(losing, RULE, champion_loss=10.5).served == "baseline"
    assert decide_promotion(losing, RULE, champion_loss=9.9).served == "keep"


def test_losses_per_origin():
    actual = np.array([[0.01], [-0.02]])
    predicted = np.array([[[-0.01, 0.0, 0.01]], [[-0.01, 0.0, 0.01]]])
    levels = (0.1, 0.5, 0.9)
    # origin 0: q10 0.1*0.02, q50 0.5*0.01, q90 0 -> mean 0.0023333
    pinball = per_origin_loss(actual, predicted, levels, "pinball")
    assert pinball[0] == pytest.approx((0.002 + 0.005 + 0.0) / 3)
    assert per_origin_loss(actual, predicted, levels, "mae").tolist() == pytest.approx([0.01, 0.02])
    score = per_origin_loss(actual, predicted, levels, "interval_score")
    assert score.tolist() == pytest.approx([0.02, 0.02 + (2 / 0.2) * 0.01])
    with pytest.raises(ValueError, match="unknown loss 'rmse'"):
        per_origin_loss(actual, predicted, levels, "rmse")


def test_evidence_picks_the_lowest_loss_baseline_and_tests_against_it():
    rng = np.random.default_rng(0)
    actual = rng.normal(0, 1, (400, 1))
    sharp = np.stack([actual[:, 0] - 1.3, actual[:, 0], actual[:, 0] + 1.3], axis=1)[:, None, :]
    wide = np.tile([-1.3, 0.0, 1.3], (400, 1))[:, None, :]
    wider = 2 * wide
    found = gate_evidence(
        "test",
        actual,
        {"transformer": sharp, "ewma": wide, "garch": wider},
        candidate="transformer",
        baselines=("ewma", "garch"),
        levels=(0.1, 0.5, 0.9),
        max_steps=1,
        loss="pinball",
    )
    assert found.baseline == "ewma" and found.loss < found.baseline_loss
    assert found.p_value < 1e-6 and found.coverage == (1.0,)


CONFIG = TrainConfig(
    horizon_seconds=(60, 300),
    window_steps=24,
    batch_size=64,
    max_epochs=6,
    patience=3,
    walk_forward_folds=2,
    walk_forward_min_train_fraction=0.6,
    seed=1,
    baseline_history_steps=240,
)


@pytest.fixture(scope="module")
def planted():
    # r_t = 0.7 r_{t-15} + noise: learnable from a 24-step window (see test_acceptance)
    return prepare_data(synthetic_indicator_frame(2500, ar_lag=15, ar_coef=0.7, seed=1), CONFIG)


def test_permuted_targets_leave_no_promotable_skill(planted):
    order = np.random.default_rng(7).permutation(planted.targets.shape[0])
    outcome = train_and_decide(replace(planted, targets=planted.targets[order]), CONFIG)
    assert outcome.decision.served == "baseline", outcome.decision.reason


def test_targets_shifted_past_the_signal_leave_no_promotable_skill(planted):
    # each window now predicts returns 30 steps later, which depend on returns after its end
    shift = 30
    shifted = np.full_like(planted.targets, np.nan)
    shifted[:-shift] = planted.targets[shift:]
    ends = planted.ends[planted.ends < planted.targets.shape[0] - shift]
    outcome = train_and_decide(replace(planted, targets=shifted, ends=ends), CONFIG)
    assert outcome.decision.served == "baseline", outcome.decision.reason
