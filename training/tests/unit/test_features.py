import numpy as np
import pytest

from cryptopred_core.records import INDICATOR_COLUMNS, IndicatorRow, field_names
from cryptopred_training.config import TrainConfig
from cryptopred_training.features import (
    FEATURE_COLUMNS,
    Normalizer,
    WindowSource,
    chronological_split,
    compute_features,
    compute_targets,
    feature_arrays,
    gather_windows,
    horizon_steps,
    valid_window_ends,
)
from cryptopred_training.flow import fit_normalizer, prepare_data
from cryptopred_training.synthetic import synthetic_indicator_frame

CONFIG = TrainConfig(window_steps=16, min_rows=500)


@pytest.fixture(scope="module")
def frame():
    return synthetic_indicator_frame(1200, seed=5)


def test_horizon_steps_divide_exactly():
    assert horizon_steps([60, 300, 900], 60) == (1, 5, 15)
    assert horizon_steps([300], 300) == (1,)
    with pytest.raises(ValueError, match="90 is not a positive multiple of candle_seconds 60"):
        horizon_steps([60, 90], 60)


def test_targets_are_log_returns_over_each_horizon():
    close = np.array([100.0, 110.0, 99.0, 120.0, 121.0])
    targets = compute_targets(close, [1, 3])
    assert targets[0, 0] == pytest.approx(np.log(1.1))
    assert targets[2, 0] == pytest.approx(np.log(120 / 99))
    assert targets[1, 1] == pytest.approx(np.log(121 / 110))
    assert np.isnan(targets[4, 0]) and np.isnan(targets[2:, 1]).all()
    assert np.isfinite(targets[:4, 0]).all() and np.isfinite(targets[:2, 1]).all()


def test_features_read_only_record_fields_and_every_indicator_but_obv():
    """A renamed or dropped record field fails here, and so does an indicator left out."""
    read = []

    def column(name):
        read.append(name)
        return np.ones(3)

    out = feature_arrays(column)
    assert tuple(out) == FEATURE_COLUMNS
    assert set(read) <= set(field_names(IndicatorRow))
    assert set(INDICATOR_COLUMNS) - set(read) == {"obv"}  # obv is not a feature


def test_features_are_scale_free(frame):
    scaled = frame.copy()
    price_like = ["open", "high", "low", "close", "vwap", "sma_7", "sma_14", "sma_21", "sma_60"]
    price_like += ["ema_7", "ema_14", "ema_21", "ema_60", "macd_7", "macdsignal_7", "macdhist_7"]
    price_like += ["atr_14", "bbands_upper_20", "bbands_middle_20", "bbands_lower_20"]
    scaled[price_like] *= 1000.0
    a, b = compute_features(frame), compute_features(scaled)
    assert list(a.columns) == list(FEATURE_COLUMNS)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, atol=1e-12)


def test_features_at_t_never_use_later_rows(frame):
    t = 700
    changed = frame.copy()
    changed.loc[t + 1 :, ["open", "high", "low", "close", "vwap", "volume", "sma_7", "rsi_14"]] *= (
        1.5
    )
    before = compute_features(frame).to_numpy()[: t + 1]
    after = compute_features(changed).to_numpy()[: t + 1]
    np.testing.assert_array_equal(before, after)
    # and the model input window ending at t is built from rows <= t only
    windows = gather_windows(np.arange(20.0)[:, None], np.array([10]), 4)
    assert windows[0, :, 0].tolist() == [7.0, 8.0, 9.0, 10.0]


def test_valid_ends_skip_nan_windows_and_missing_targets():
    features = np.ones((30, 2))
    features[5, 1] = np.nan
    targets = compute_targets(np.linspace(1, 2, 30), [2])
    ends = valid_window_ends(features, targets, 4)
    assert ends.tolist() == [3, 4, *range(9, 28)]  # windows holding row 5 are out


def test_split_is_chronological_with_a_horizon_gap(frame):
    data = prepare_data(frame, CONFIG)
    gap = max(data.steps)
    split = chronological_split(data.ends, 0.6, 0.2, gap)
    for part in (split.train, split.validation, split.test):
        assert np.all(np.diff(part) > 0)
    # no train target (end + longest horizon) reaches a validation window end, and so on
    assert split.train[-1] + gap < split.validation[0]
    assert split.validation[-1] + gap < split.test[0]
    assert len(split.train) + len(split.validation) + len(split.test) <= len(data.ends)


def test_normalizer_uses_train_rows_only(frame):
    data = prepare_data(frame, CONFIG)
    split = chronological_split(data.ends, 0.6, 0.2, max(data.steps))
    normalizer = fit_normalizer(data, split.train)
    last = split.train[-1]
    expected = np.nanmean(data.features[: last + 1], axis=0)
    np.testing.assert_allclose(normalizer.mean, expected)
    # changing every row after the last train target leaves the normaliser unchanged
    changed = frame.copy()
    changed.loc[last + max(data.steps) + 1 :, ["close", "high", "vwap", "volume"]] *= 3.0
    other = fit_normalizer(prepare_data(changed, CONFIG), split.train)
    assert other == normalizer
    assert np.nanmean(data.features[last + 1 :], axis=0)[3] != pytest.approx(normalizer.mean[3])


def test_normalizer_round_trip_and_nan_handling():
    features = np.array([[1.0, 5.0], [3.0, 5.0], [np.nan, 5.0]])
    targets = np.array([[0.1], [-0.1], [0.3]])
    normalizer = Normalizer.fit(features, targets)
    assert normalizer.mean == [2.0, 5.0]
    assert normalizer.std == [1.0, 1.0]  # constant column: std 1, not 0
    z = normalizer.transform(features)
    assert z.dtype == np.float32
    assert z[:, 0].tolist() == [-1.0, 1.0, 0.0]
    assert Normalizer.from_dict(normalizer.to_dict()) == normalizer


def test_window_source_batches_are_reproducible():
    features = np.random.default_rng(0).normal(size=(50, 3))
    targets = compute_targets(np.exp(np.cumsum(features[:, 0] / 100)), [1])
    ends = valid_window_ends(features, targets, 5)
    source = WindowSource.build(features, targets, ends, Normalizer.fit(features, targets), 5)
    first = [b["y"] for b in source.batches(8, shuffle_seed=3)]
    second = [b["y"] for b in source.batches(8, shuffle_seed=3)]
    assert all((a == b).all() for a, b in zip(first, second, strict=True))
    batch = next(source.batches(8))
    assert tuple(batch["x"].shape) == (8, 5, 3) and tuple(batch["y"].shape) == (8, 1)
