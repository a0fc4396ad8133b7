"""The volatility baselines on simulated prices whose true volatility is known."""

import numpy as np
import pytest

from cryptopred_training.features import compute_targets
from cryptopred_training.models.volatility import (
    EmpiricalQuantiles,
    EwmaVolatility,
    GarchVolatility,
    VolatilityBaselines,
    step_returns,
)

Q = (0.1, 0.5, 0.9)
STEPS = (1, 5, 15)


def prices(returns):
    return 100.0 * np.exp(np.cumsum(returns))


def coverage(close, predicted, ends):
    actual = compute_targets(close, STEPS)[ends]
    inside = (actual >= predicted[..., 0]) & (actual <= predicted[..., 2])
    return inside.mean(axis=0)


def garch_returns(n, omega, alpha, beta, nu, seed):
    rng = np.random.default_rng(seed)
    shocks = rng.standard_t(nu, n) * np.sqrt((nu - 2) / nu)
    out = np.empty(n)
    v = omega / (1 - alpha - beta)
    for t in range(n):
        out[t] = np.sqrt(v) * shocks[t]
        v = omega + alpha * out[t] ** 2 + beta * v
    return out / 1e4  # basis points to log returns


def test_step_returns_look_back_only():
    log_close = np.log(np.array([100.0, 101.0, 99.0, 99.0]))
    r = step_returns(log_close, 2)
    assert np.isnan(r[:2]).all() and r[2] == pytest.approx(np.log(99 / 100))


def test_every_baseline_predicts_zero_return_and_an_ordered_interval():
    close = prices(np.random.default_rng(0).normal(0, 1e-3, 4000))
    ends = np.arange(1500, 3900)
    train = ends[:1200]
    targets = compute_targets(close, STEPS)
    fitted = VolatilityBaselines.fit(close, train, targets[train], STEPS, Q)
    for name, predicted in fitted.predict(close, ends).items():
        assert predicted.shape == (len(ends), 3, 3), name
        assert (predicted[..., 1] == 0).all(), name
        assert (predicted[..., 0] < 0).all() and (predicted[..., 2] > 0).all(), name


def test_empirical_quantiles_cover_80_percent_of_iid_returns():
    close = prices(np.random.default_rng(1).normal(0, 1e-3, 8000))
    ends = np.arange(2000, 7900)
    predicted = EmpiricalQuantiles(STEPS, Q).predict(np.log(close), ends)
    assert coverage(close, predicted, ends) == pytest.approx([0.8, 0.8, 0.8], abs=0.04)
    # ±1.28 sigma sqrt(h) for normal returns
    assert predicted[:, 1, 2].mean() == pytest.approx(1.2816e-3 * np.sqrt(5), rel=0.1)


def test_ewma_follows_a_volatility_break_and_stays_calibrated():
    rng = np.random.default_rng(2)
    sigma = np.where(np.arange(10_000) % 2000 < 1000, 5e-4, 2e-3)  # calm and wild spells
    close = prices(rng.normal(0, 1, 10_000) * sigma)
    ends = np.arange(200, 9900)
    train, test = ends[: len(ends) // 2], ends[len(ends) // 2 :]
    targets = compute_targets(close, STEPS)
    model = EwmaVolatility.fit(np.log(close), train, targets[train], STEPS, Q)
    assert model.decay < 0.999
    predicted = model.predict(np.log(close), test)
    assert coverage(close, predicted, test)[0] == pytest.approx(0.8, abs=0.04)
    wild = sigma[test] > 1e-3
    width = predicted[:, 0, 2] - predicted[:, 0, 0]
    assert np.median(width[wild]) > 2.5 * np.median(width[~wild])


def test_garch_recovers_its_parameters_and_covers_80_percent():
    returns = garch_returns(20_000, omega=0.5, alpha=0.08, beta=0.9, nu=6.0, seed=3)
    close = prices(returns)
    ends = np.arange(100, 19_900)
    train, test = ends[:12_000], ends[12_000:]
    model = GarchVolatility.fit(np.log(close), train, STEPS, Q)
    assert model.alpha + model.beta == pytest.approx(0.98, abs=0.02)
    assert model.nu == pytest.approx(6.0, abs=2.0)
    predicted = model.predict(np.log(close), test)
    assert coverage(close, predicted, test) == pytest.approx([0.8, 0.8, 0.8], abs=0.04)
