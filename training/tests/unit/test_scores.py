"""Pinball loss, interval score and the Diebold-Mariano test, against hand-worked values and
simulated forecasters of known quality."""

import math

import numpy as np
import pytest

from cryptopred_training.scores import (
    compare_to_baselines,
    diebold_mariano,
    interval_score,
    pinball_loss,
    quantile_scores,
)

LEVELS = (0.1, 0.5, 0.9)


def test_pinball_loss_weighs_misses_by_the_level():
    actual = np.array([1.0, 1.0])
    assert pinball_loss(actual, np.array([0.0, 2.0]), 0.9).tolist() == pytest.approx([0.9, 0.1])
    assert pinball_loss(actual, np.array([1.0, 1.0]), 0.5).tolist() == [0.0, 0.0]


def test_interval_score_is_width_plus_the_penalty_outside():
    lower, upper = np.array([0.0, 0.0]), np.array([1.0, 1.0])
    scores = interval_score(np.array([0.5, 1.5]), lower, upper, alpha=0.2)
    assert scores.tolist() == pytest.approx([1.0, 1.0 + 10 * 0.5])


def test_the_true_quantiles_score_best():
    rng = np.random.default_rng(0)
    actual = rng.normal(0, 1, (20_000, 1))
    z = 1.2815515655446004  # the standard normal's 0.9 quantile
    honest = np.broadcast_to(np.array([-z, 0.0, z]), (20_000, 1, 3))
    too_narrow = honest * 0.5
    scores = {
        name: quantile_scores(actual, p, LEVELS, [60])
        for name, p in (("honest", honest), ("narrow", too_narrow))
    }
    assert scores["honest"]["pinball_60s"] < scores["narrow"]["pinball_60s"]
    assert scores["honest"]["interval_score_80_60s"] < scores["narrow"]["interval_score_80_60s"]
    assert scores["honest"]["width_80_60s"] == pytest.approx(2 * z)
    assert set(scores["honest"]) >= {"pinball_q10_60s", "pinball_q50_60s", "pinball_q90_60s"}


def test_dm_finds_a_real_edge_and_not_a_fake_one():
    rng = np.random.default_rng(1)
    n = 4000
    base = rng.exponential(1.0, n)
    better = base - 0.1 + rng.normal(0, 0.3, n)  # 0.1 lower loss on average
    same = base + rng.normal(0, 0.3, n)  # equal expected loss
    edge = diebold_mariano(better, base, lag=0)
    assert edge.statistic < 0 and edge.p_value < 1e-6
    assert edge.mean_difference == pytest.approx(-0.1, abs=0.02)
    p_values = [
        diebold_mariano(base + rng.normal(0, 0.3, n), base, lag=4).p_value for _ in range(200)
    ]
    assert 0.02 < np.mean(np.array(p_values) < 0.05) < 0.09  # about 5 % false alarms
    assert diebold_mariano(same, base, lag=0).p_value > 0.001


def test_dm_widens_its_variance_for_overlapping_errors():
    """h-step forecasts share shocks: with autocorrelated differences, the HAC variance (lag
    h-1) gives a larger p-value than pretending the differences are independent."""
    rng = np.random.default_rng(2)
    shocks = rng.normal(0, 1, 3010)
    d = np.convolve(shocks, np.ones(10), mode="valid")[:3000] * 0.1 + 0.02
    naive = diebold_mariano(d, np.zeros_like(d), lag=0)
    hac = diebold_mariano(d, np.zeros_like(d), lag=9)
    assert hac.p_value > naive.p_value
    assert math.isclose(hac.mean_difference, naive.mean_difference)


def test_dm_needs_two_losses_and_handles_identical_forecasters():
    with pytest.raises(ValueError, match="at least 2"):
        diebold_mariano(np.array([1.0]), np.array([1.0]), lag=0)
    same = np.array([1.0, 2.0, 3.0])
    assert diebold_mariano(same, same, lag=1).p_value == 1.0


def test_comparison_names_skill_and_test_per_baseline_and_horizon():
    rng = np.random.default_rng(3)
    actual = rng.normal(0, 1, (3000, 2))
    z = 1.2815515655446004
    honest = np.broadcast_to(np.array([-z, 0.0, z]), (3000, 2, 3)).copy()
    predicted = {"transformer": honest, "persistence": honest * 3}
    out = compare_to_baselines(actual, predicted, LEVELS, [1, 5], [60, 300], "transformer")
    assert set(out) == {
        f"{kind}_vs_persistence_{h}s" for kind in ("skill", "dm_stat", "dm_p") for h in (60, 300)
    }
    assert out["skill_vs_persistence_60s"] > 0.1 and out["dm_p_vs_persistence_60s"] < 1e-6
