import numpy as np
import pytest

from cryptopred_training.dataset import DataValidationError, validate_indicator_frame
from cryptopred_training.synthetic import synthetic_indicator_frame


@pytest.fixture(scope="module")
def frame():
    return synthetic_indicator_frame(1500, seed=3)


def check(frame, **kwargs):
    return validate_indicator_frame(frame, candle_seconds=60, min_rows=1000, **kwargs)


def test_valid_frame_gives_a_summary(frame):
    summary = check(frame)
    assert summary["n_rows"] == 1500
    assert summary["pair"] == "BTC/USD"
    assert summary["start_ms"] == frame["window_start_ms"].iloc[0]
    assert summary["end_ms"] == frame["window_end_ms"].iloc[-1]
    assert summary["nan_share"]["sma_60"] == pytest.approx(59 / 1500)
    assert summary["nan_share"]["close"] == 0.0
    assert summary["max_nan_share"] == max(summary["nan_share"].values())


def expect(frame, problem, count, **kwargs):
    with pytest.raises(DataValidationError) as info:
        check(frame, **kwargs)
    assert info.value.problem == problem
    assert info.value.count == count
    assert str(info.value).startswith(f"{problem}: {count} ")


def test_too_few_rows(frame):
    expect(frame.iloc[:999], "too few rows", 999)


def test_missing_columns(frame):
    expect(frame.drop(columns=["rsi_7", "obv"]), "missing columns", 2)


def test_duplicate_keys(frame):
    doubled = frame.iloc[np.r_[0:1000, 10, 20, 30]]
    expect(doubled, "duplicate keys", 3)


def test_unsorted_rows(frame):
    order = np.arange(1500)
    order[[100, 101]] = order[[101, 100]]
    order[[700, 701]] = order[[701, 700]]
    expect(frame.iloc[order], "unsorted rows", 2)


def test_gaps_count_missing_candles(frame):
    gapped = frame.drop(index=[200, 201, 202, 900])
    expect(gapped, "gaps in the time grid", 4)


def test_off_grid_rows(frame):
    shifted = frame.copy()
    shifted.loc[[5, 6], "window_start_ms"] += 1
    expect(shifted, "gaps in the time grid", 2)


def test_non_positive_prices(frame):
    bad = frame.copy()
    bad.loc[[10, 11], "close"] = 0.0
    bad.loc[12, "low"] = -1.0
    expect(bad, "non-positive prices", 3)


def test_nan_and_inf_share(frame):
    bad = frame.iloc[100:].reset_index(drop=True)  # past the indicator warm-up
    bad.loc[100:199, "rsi_7"] = np.nan
    bad.loc[100:149, "volume"] = np.inf
    bad.loc[100:110, "ema_7"] = np.nan
    expect(bad, "NaN/inf share over threshold", 1, max_nan_share=0.05)
    expect(bad, "NaN/inf share over threshold", 2, max_nan_share=0.02)
    check(bad, max_nan_share=0.1)
