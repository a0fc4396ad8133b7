from dataclasses import replace

import numpy as np
import pytest
import torch

from cryptopred_training.config import TrainConfig
from cryptopred_training.features import (
    Normalizer,
    WindowSource,
    compute_targets,
    valid_window_ends,
)
from cryptopred_training.models.baselines import PersistenceModel, RidgeModel
from cryptopred_training.models.transformer import (
    TransformerSpec,
    build_transformer,
    calibrate_intervals,
    warm_start_autoregressive,
)
from cryptopred_training.steps import eval_step, fit, pinball_loss, train_step

SPEC = TransformerSpec(n_features=4, n_horizons=3, window_steps=12, d_model=16, n_heads=4)


def test_pinball_loss_hand_computed():
    predicted = torch.tensor([[[0.0, 1.0, 2.0]]])  # one sample, one horizon, q 0.1/0.5/0.9
    # y = 3: errors 3, 2, 1 -> 0.1*3, 0.5*2, 0.9*1 -> mean (0.3 + 1.0 + 0.9) / 3
    assert float(pinball_loss(predicted, torch.tensor([[3.0]]))) == pytest.approx(2.2 / 3)
    # y = -1: errors -1, -2, -3 -> 0.9*1, 0.5*2, 0.1*3 -> mean (0.9 + 1.0 + 0.3) / 3
    assert float(pinball_loss(predicted, torch.tensor([[-1.0]]))) == pytest.approx(2.2 / 3)
    # y = 1: errors 1, 0, -1 -> 0.1, 0, 0.1
    assert float(pinball_loss(predicted, torch.tensor([[1.0]]))) == pytest.approx(0.2 / 3)
    assert float(pinball_loss(predicted, torch.tensor([[1.0]]), (0.5, 0.5, 0.5))) == (
        pytest.approx(1.0 / 3)
    )


def test_quantiles_never_cross_and_shape():
    model = build_transformer(SPEC, seed=0)
    x = torch.randn(64, 12, 4) * 10
    out = model(x)
    assert tuple(out.shape) == (64, 3, 3)
    assert (out[..., 0] <= out[..., 1]).all() and (out[..., 1] <= out[..., 2]).all()
    # shorter windows are allowed; longer ones are refused
    assert tuple(model(x[:, -5:]).shape) == (64, 3, 3)
    with pytest.raises(ValueError, match="exceeds 12"):
        model(torch.randn(1, 13, 4))


def test_attention_is_causal():
    model = build_transformer(SPEC, seed=0).eval()
    block = model.blocks[0].attn
    x = torch.randn(2, 12, 16)
    changed = x.clone()
    changed[:, 8:] += 5.0
    with torch.no_grad():
        np.testing.assert_allclose(block(x)[:, :8], block(changed)[:, :8], atol=1e-6)
        assert not torch.allclose(block(x)[:, 8:], block(changed)[:, 8:])


def test_the_autoregressive_skip_adds_a_linear_term_over_the_return_window_to_the_median():
    skipped = build_transformer(replace(SPEC, autoregressive_feature=1), seed=0).eval()
    plain = build_transformer(SPEC, seed=0).eval()
    plain.load_state_dict(skipped.state_dict(), strict=False)  # all but the skip
    x = torch.randn(8, 12, 4)
    with torch.no_grad():
        # the skip and the attention's share of the median start at zero
        assert skipped(x)[..., 1].abs().max() == 0
        torch.testing.assert_close(skipped(x), plain(x))
        weight = torch.randn(3, 12)
        skipped.autoregressive.weight.copy_(weight)
        for steps in (12, 5):
            window = x[:, -steps:]
            shift = window[..., 1] @ weight[:, -steps:].T  # (batch, horizons)
            expected = plain(window) + shift.unsqueeze(-1)  # every quantile moves with it
            torch.testing.assert_close(skipped(window), expected)


@pytest.mark.parametrize("spread", [0.05, 20.0])
def test_calibrated_intervals_cover_the_held_out_share_and_never_cross(spread):
    # spread 20: the untrained intervals are far too narrow; 0.05: far too wide
    model = build_transformer(replace(SPEC, calibrated_intervals=True), seed=0).eval()
    x = torch.randn(500, 12, 4)
    with torch.no_grad():
        median = model(x)[..., 1]
    y = median + spread * torch.randn_like(median)
    calibrate_intervals(model, x, y, coverage=0.8)
    with torch.no_grad():
        out = model(x)
    inside = ((out[..., 0] <= y) & (y <= out[..., 2])).double().mean(dim=0)
    # at least the share asked for; a little more where narrowing met an offset's floor of 0
    assert ((inside >= 0.8) & (inside <= 0.83)).all(), inside
    assert (out[..., 0] <= out[..., 1]).all() and (out[..., 1] <= out[..., 2]).all()
    # the widths travel with the weights
    loaded = build_transformer(replace(SPEC, calibrated_intervals=True), seed=1).eval()
    loaded.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), out)


def test_warm_start_sets_the_skip_to_the_least_squares_autoregression():
    model = build_transformer(replace(SPEC, autoregressive_feature=0), seed=0)
    x = torch.randn(2000, 12, 4)
    coefficients = torch.zeros(12, 3)
    coefficients[3, 0], coefficients[7, 1], coefficients[[7, 8], 2] = 0.5, -0.3, 0.2
    y = x[..., 0] @ coefficients + 0.01 * torch.randn(2000, 3)
    warm_start_autoregressive(model, x, y, alpha=1.0)
    torch.testing.assert_close(model.autoregressive.weight.T, coefficients, atol=0.01, rtol=0)


def small_sources(seed):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(400, 4))
    targets = compute_targets(np.exp(np.cumsum(features[:, 0] / 100)), [1, 2, 3])
    normalizer = Normalizer.fit(features, targets)
    ends = valid_window_ends(features, targets, 12)
    train = WindowSource.build(features, targets, ends[:300], normalizer, 12)
    validation = WindowSource.build(features, targets, ends[300:], normalizer, 12)
    return train, validation


def run_fit(seed):
    config = TrainConfig(window_steps=12, batch_size=32, max_epochs=2, seed=seed)
    model = build_transformer(SPEC, seed=seed)
    train, validation = small_sources(0)
    torch.manual_seed(seed)
    result = fit(model, train, validation, config)
    return model, result, validation


def test_same_seed_gives_identical_weights_and_predictions():
    a, result_a, validation = run_fit(7)
    b, result_b, _ = run_fit(7)
    c, _, _ = run_fit(8)
    for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(wa, wb), name
    batch = validation.batch(validation.ends)
    with torch.no_grad():
        assert torch.equal(a(batch["x"]), b(batch["x"]))
        assert not torch.equal(a(batch["x"]), c(batch["x"]))
    assert [r.train_loss for r in result_a.history] == [r.train_loss for r in result_b.history]


def test_train_step_lowers_the_loss_and_eval_step_reports_it():
    model = build_transformer(SPEC, seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = {"x": torch.randn(32, 12, 4), "y": torch.randn(32, 3)}
    before = eval_step(model, batch)
    losses = [train_step(model, optimizer, batch) for _ in range(30)]
    after = eval_step(model, batch)
    assert isinstance(losses[0], float)
    assert after["loss"] < before["loss"] and losses[-1] < losses[0]
    assert set(after) == {"loss", "mae", "coverage", "n"} and after["n"] == 32
    assert 0.0 <= after["coverage"] <= 1.0


def test_fit_reports_each_epoch_and_keeps_the_best_weights():
    reports = []
    config = TrainConfig(window_steps=12, batch_size=64, max_epochs=3, patience=5)
    model = build_transformer(SPEC, seed=0)
    train, validation = small_sources(1)
    result = fit(model, train, validation, config, on_epoch=reports.append)
    assert [r.epoch for r in reports] == [0, 1, 2] == [r.epoch for r in result.history]
    best = min(reports, key=lambda r: r.validation["loss"])
    assert result.best_epoch == best.epoch and best.is_best
    final = eval_step(model, validation.batch(validation.ends))
    assert final["loss"] == pytest.approx(best.validation["loss"], rel=1e-5)


def test_persistence_interval_is_the_train_return_quantiles():
    returns = np.arange(-50, 51, dtype=float).reshape(-1, 1) / 1000
    model = PersistenceModel.fit(returns, (0.1, 0.5, 0.9))
    predicted = model.predict(4)
    assert predicted.shape == (4, 1, 3)
    assert predicted[0, 0].tolist() == pytest.approx([-0.04, 0.0, 0.04])


def test_ridge_recovers_a_linear_relation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3))
    y = np.stack([x @ [1.0, -2.0, 0.5] + 3.0, x[:, 0] * 0.1], axis=1)
    y[:, 0] += rng.normal(0, 0.01, 2000)
    model = RidgeModel.fit(x, y, alpha=1e-6, quantiles=(0.1, 0.5, 0.9))
    np.testing.assert_allclose(model.weights[:, 0], [1.0, -2.0, 0.5], atol=1e-3)
    assert model.intercept[0] == pytest.approx(3.0, abs=1e-3)
    predicted = model.predict(x[:5])
    assert (predicted[..., 0] <= predicted[..., 1]).all()
    assert (predicted[..., 1] <= predicted[..., 2]).all()
    np.testing.assert_allclose(predicted[:, 0, 1], y[:5, 0], atol=0.05)
