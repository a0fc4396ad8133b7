"""The live calibration monitor: coverage band over time, skill with a Diebold-Mariano test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cryptopred_core.records import PredictionOutcome
from cryptopred_core.settings import SettingsError
from cryptopred_serving.calibration import CalibrationMonitor, DemotionPolicy, policy_of
from cryptopred_serving.champion_watch import Champion
from cryptopred_serving.outcomes import pinball_price
from cryptopred_serving.settings import ServeSettings, load_serve_settings

NAME = "BTC-USD-60s"
START_MS = 1_700_000_040_000
Z80 = 1.2815515655446004  # the 0.9 quantile of the standard normal
CHAMPION = Champion(NAME, "3", None, tags={"model_kind": "transformer"})


def outcome(
    i: int,
    base: float,
    actual: float,
    median: float,
    half_width: float,
    baseline_pinball: float | None = None,
    version: str = "3",
) -> PredictionOutcome:
    lower, upper = median - half_width, median + half_width
    return PredictionOutcome(
        pair="BTC/USD",
        candle_seconds=60,
        horizon_seconds=60,
        window_end_ms=START_MS + i * 60_000,
        model_name=NAME,
        model_version=version,
        target_ts_ms=START_MS + (i + 1) * 60_000,
        base_close=base,
        predicted_close=median,
        actual_close=actual,
        abs_error=abs(median - actual),
        persistence_abs_error=abs(base - actual),
        direction_hit=(median > base) == (actual > base),
        interval_hit=lower <= actual <= upper,
        created_ms=START_MS + (i + 1) * 60_000,
        pinball_loss=pinball_price(lower, median, upper, actual),
        baseline_pinball_loss=baseline_pinball,
        baseline_version=None if baseline_pinball is None else "2",
    )


def volatility_break(n_before: int, n_after: int, seed: int = 7) -> list[PredictionOutcome]:
    """A model whose fixed 80 % interval (z * sigma) is right until sigma triples."""
    rng = np.random.default_rng(seed)
    price, sigma = 30_000.0, 0.001
    out = []
    for i in range(n_before + n_after):
        step_sigma = sigma if i < n_before else 3 * sigma
        actual = price * math.exp(rng.normal(0.0, step_sigma))
        out.append(outcome(i, price, actual, price, Z80 * sigma * price))
        price = actual
    return out


def first_demotion(monitor, outcomes, champion=CHAMPION):
    for o in outcomes:
        decision = monitor.observe(o, champion)
        if decision is not None:
            return o, decision
    return None, None


def test_a_volatility_break_demotes_after_the_set_time_and_not_before_the_break():
    policy = DemotionPolicy(after_s=1800, min_outcomes=60, window_outcomes=120)
    monitor = CalibrationMonitor(policy)
    n_before = 600
    outcomes = volatility_break(n_before, 400)
    # before the break: calibrated (about 80 % coverage), never demoted
    assert first_demotion(monitor, outcomes[:n_before]) == (None, None)
    coverage = monitor.coverage(NAME, "3", 60)
    assert coverage is not None and 0.70 <= coverage <= 0.90
    # after it: the coverage falls out of the band and stays out; demoted once it has for 30 min
    left_ms, decision = None, None
    for o in outcomes[n_before:]:
        decision = monitor.observe(o, CHAMPION)
        coverage = monitor.coverage(NAME, "3", 60)
        assert coverage is not None
        if not 0.70 <= coverage <= 0.90:
            left_ms = o.target_ts_ms if left_ms is None else left_ms
        elif decision is None:
            left_ms = None
        if decision is not None:
            break
    assert decision is not None and left_ms is not None
    assert decision.model_version == "3" and "coverage" in decision.reason
    assert decision.decided_at_ms - left_ms == 1800 * 1000
    assert decision.decided_at_ms <= outcomes[n_before].target_ts_ms + 3 * 3600 * 1000
    # once per decision
    assert first_demotion(monitor, outcomes[n_before:]) == (None, None)


def test_coverage_outside_the_band_for_less_than_the_set_time_is_no_demotion():
    monitor = CalibrationMonitor(DemotionPolicy(after_s=10 * 3600, window_outcomes=120))
    outcomes = volatility_break(600, 300)
    assert first_demotion(monitor, outcomes) == (None, None)


def test_a_baseline_champion_is_never_demoted_and_other_versions_are_ignored():
    outcomes = volatility_break(100, 600)
    baseline = Champion(NAME, "3", None, tags={"model_kind": "baseline"})
    policy = DemotionPolicy(after_s=60)
    assert first_demotion(CalibrationMonitor(policy), outcomes, baseline) == (None, None)
    other = Champion(NAME, "4", None, tags={"model_kind": "transformer"})
    assert first_demotion(CalibrationMonitor(policy), outcomes, other) == (None, None)
    assert first_demotion(CalibrationMonitor(policy), outcomes, None) == (None, None)
    assert first_demotion(CalibrationMonitor(policy), outcomes)[1] is not None


def skill_outcomes(
    bias_sigmas: float, width: float, baseline_width: float, n: int, seed: int = 3
) -> list[PredictionOutcome]:
    """A baseline with a persistence median and an interval `baseline_width` times the right
    one, beside a champion whose median is shifted by `bias_sigmas` step deviations and whose
    interval is `width` times the right one (both wide enough to keep coverage in the band)."""
    rng = np.random.default_rng(seed)
    price, sigma = 30_000.0, 0.001
    out = []
    for i in range(n):
        actual = price * math.exp(rng.normal(0.0, sigma))
        half = Z80 * sigma * price
        baseline = pinball_price(
            price - half * baseline_width, price, price + half * baseline_width, actual
        )
        median = price * (1 + bias_sigmas * sigma)
        out.append(outcome(i, price, actual, median, half * width, baseline_pinball=baseline))
        price = actual
    return out


def test_significantly_negative_skill_against_the_baseline_demotes():
    monitor = CalibrationMonitor(
        DemotionPolicy(coverage_low=0.0, coverage_high=1.0, after_s=600, min_outcomes=60)
    )
    at, decision = first_demotion(monitor, skill_outcomes(1.0, 1.6, 1.0, 400))
    assert decision is not None
    assert "skill" in decision.reason and "Diebold-Mariano" in decision.reason
    assert "significantly worse for 600 s" in decision.reason
    # 60 outcomes first, then 10 minutes (10 outcomes) of significantly negative skill
    assert at is not None and at.window_end_ms >= START_MS + 69 * 60_000


def test_significantly_negative_skill_for_less_than_the_set_time_is_no_demotion():
    monitor = CalibrationMonitor(
        DemotionPolicy(coverage_low=0.0, coverage_high=1.0, after_s=600, min_outcomes=60)
    )
    worse = skill_outcomes(1.0, 1.6, 1.0, 400)
    _, decision = first_demotion(monitor, worse[:65])  # worse for at most 5 minutes
    assert decision is None
    assert first_demotion(monitor, worse[65:])[1] is not None


def test_a_champion_better_than_the_baseline_is_kept():
    monitor = CalibrationMonitor(
        DemotionPolicy(coverage_low=0.0, coverage_high=1.0, after_s=300, min_outcomes=60)
    )
    assert first_demotion(monitor, skill_outcomes(0.0, 1.0, 1.6, 400)) == (None, None)


def test_a_strict_p_value_keeps_a_slightly_worse_champion():
    outcomes = skill_outcomes(0.3, 1.6, 1.0, 400)
    strict = DemotionPolicy(
        coverage_low=0.0, coverage_high=1.0, after_s=300, min_outcomes=60, p_value=1e-9
    )
    assert first_demotion(CalibrationMonitor(strict), outcomes) == (None, None)
    usual = DemotionPolicy(coverage_low=0.0, coverage_high=1.0, after_s=300, min_outcomes=60)
    assert first_demotion(CalibrationMonitor(usual), outcomes)[1] is not None


def test_forget_allows_a_new_decision():
    monitor = CalibrationMonitor(
        DemotionPolicy(coverage_low=0.0, coverage_high=1.0, after_s=300, min_outcomes=60)
    )
    outcomes = skill_outcomes(1.0, 1.6, 1.0, 400)
    _, decision = first_demotion(monitor, outcomes[:200])
    assert decision is not None
    assert first_demotion(monitor, outcomes[200:300]) == (None, None)
    monitor.forget(NAME, "3")
    assert first_demotion(monitor, outcomes[300:])[1] is not None


@pytest.mark.parametrize(
    ("low", "high", "min_outcomes", "window"),
    [(0.9, 0.7, 60, 240), (0.7, 1.2, 60, 240), (0.7, 0.9, 300, 240), (0.7, 0.9, 1, 240)],
)
def test_the_policy_rejects_a_bad_band_or_counts(low, high, min_outcomes, window):
    with pytest.raises(ValueError):
        DemotionPolicy(low, high, min_outcomes=min_outcomes, window_outcomes=window)


def test_pinball_in_price_units():
    # actual above the upper quantile: 0.1*(y-l) + 0.5*(y-m) + 0.9*(y-u), averaged over 3
    assert pinball_price(90.0, 100.0, 110.0, 120.0) == pytest.approx((3.0 + 10.0 + 9.0) / 3)
    # actual at the median: only the outer quantiles lose, each 0.1 * 10
    assert pinball_price(90.0, 100.0, 110.0, 100.0) == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    # below the lower one: 0.9*(l-y) + 0.5*(m-y) + 0.1*(u-y)
    assert pinball_price(90.0, 100.0, 110.0, 80.0) == pytest.approx((9.0 + 10.0 + 3.0) / 3)


def test_the_settings_make_the_policy_and_a_bad_one_fails_in_one_line():
    policy = policy_of(ServeSettings(demotion_coverage_low=0.75, demotion_after_s=600))
    assert policy == DemotionPolicy(0.75, 0.90, 600.0, 0.05, 60, 240)
    for bad, env in [
        ({"demotion_coverage_low": 0.9, "demotion_coverage_high": 0.8}, "COVERAGE_HIGH"),
        ({"demotion_min_outcomes": 100, "demotion_window_outcomes": 50}, "WINDOW_OUTCOMES"),
        ({"demotion_p_value": 0.0}, "P_VALUE"),
    ]:
        with pytest.raises(SettingsError) as failed:
            load_serve_settings(**bad)
        message = str(failed.value)
        assert "\n" not in message and f"CRYPTOPRED_DEMOTION_{env}" in message
