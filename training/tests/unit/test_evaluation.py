import numpy as np
import pytest

from cryptopred_training.evaluation import forecast_metrics, walk_forward, walk_forward_folds


def test_forecast_metrics_hand_computed():
    base = np.array([100.0, 200.0])
    actual = np.log(np.array([[1.01], [0.99]]))  # prices 101 and 198
    predicted = np.zeros((2, 1, 3))
    predicted[:, 0, 1] = np.log([1.02, 1.0])  # prices 102 (up, hit) and 200 (zero, miss)
    predicted[:, 0, 0] = [0.0, -0.1]
    predicted[:, 0, 2] = [0.05, 0.0]
    metrics = forecast_metrics(base, actual, predicted, [60])
    assert metrics["mae_60s"] == pytest.approx((1.0 + 2.0) / 2)
    assert metrics["rmse_60s"] == pytest.approx(np.sqrt((1.0 + 4.0) / 2))
    assert metrics["directional_accuracy_60s"] == pytest.approx(0.5)
    assert metrics["coverage_80_60s"] == pytest.approx(1.0)
    predicted[1, 0, 0] = -0.001  # 198 is now below the lower bound
    assert forecast_metrics(base, actual, predicted, [60])["coverage_80_60s"] == 0.5


def test_walk_forward_folds_are_chronological_and_disjoint():
    ends = np.arange(100, 1100, dtype=np.int64)
    folds = walk_forward_folds(ends, 4, min_train_fraction=0.4, gap_steps=15)
    assert len(folds) == 4
    tests = [test for _, test in folds]
    assert np.concatenate(tests).tolist() == ends[400:].tolist()  # consecutive, no overlap
    for i, (train, test) in enumerate(folds):
        assert np.all(np.diff(test) > 0) and np.all(np.diff(train) > 0)
        assert train[-1] + 15 < test[0]  # train targets end before the test block
        if i:
            assert len(train) > len(folds[i - 1][0])  # the window expands
            assert folds[i - 1][1][-1] < test[0]
    with pytest.raises(ValueError, match="too few windows"):
        walk_forward_folds(ends[:5], 4, min_train_fraction=0.5, gap_steps=0)


def test_walk_forward_calls_the_fit_function_per_fold_and_averages():
    calls = []

    def fit_and_score(train, test):
        calls.append((train, test))
        return {"model": {"mae_60s": float(len(calls))}, "persistence": {"mae_60s": 10.0}}

    result = walk_forward(np.arange(300, dtype=np.int64), 3, fit_and_score, gap_steps=5)
    assert len(calls) == 3 == len(result.folds)
    assert all(train.max() < test.min() for train, test in calls)
    assert result.mean == {"model": {"mae_60s": 2.0}, "persistence": {"mae_60s": 10.0}}
