"""The live metrics' skill against the baseline, from the query's sums."""

from __future__ import annotations

import pytest

from cryptopred_serving.backend import live_metric
from cryptopred_serving.schemas import LiveMetric

ROW = {
    "model_name": "BTC-USD-60s",
    "model_version": 3,
    "horizon_seconds": 60,
    "n": 10,
    "mae": 5.0,
    "persistence_mae": 4.0,
    "direction_accuracy": 0.5,
    "interval_coverage": 0.8,
    "pinball_loss": 2.0,
    "baseline_pinball_loss": 1.6,
    "paired_n": 8,
    "paired_pinball_sum": 18.0,
    "paired_baseline_sum": 12.0,
}


def test_skill_is_one_minus_the_paired_pinball_ratio():
    metric = live_metric(ROW)
    assert metric["skill"] == pytest.approx(1 - 18.0 / 12.0)
    assert metric["model_version"] == "3" and metric["baseline_n"] == 8
    assert not any(k.startswith("paired_") for k in metric)
    assert LiveMetric(**metric).skill == pytest.approx(-0.5)


def test_no_skill_without_paired_outcomes_and_older_rows_without_pinball():
    unpaired = {**ROW, "paired_n": 0, "paired_pinball_sum": None, "paired_baseline_sum": None}
    assert live_metric(unpaired)["skill"] is None
    older = {**unpaired, "pinball_loss": None, "baseline_pinball_loss": None}
    metric = LiveMetric(**live_metric(older))
    assert metric.pinball_loss is None and metric.skill is None and metric.interval_coverage == 0.8
