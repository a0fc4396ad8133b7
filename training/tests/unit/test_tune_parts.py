"""Ray-free parts of the Tune runner: the trials' data, the choice of the best trial and what
the training run records about the search."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cryptopred_training.config import TrainConfig
from cryptopred_training.features import chronological_split
from cryptopred_training.flow import prepare_data
from cryptopred_training.synthetic import synthetic_indicator_frame
from cryptopred_training.tune import (
    TrialOutcome,
    TuneOptions,
    TuneOutcome,
    best_trial,
    trial_sources,
    tuning_inputs,
)
from cryptopred_training.tune_search import ModelSize, SearchSpace, TrialPoint

CONFIG = TrainConfig(horizon_seconds=(60, 300), window_steps=24, min_rows=100)
SPACE = SearchSpace(window_steps=(12, 24, 48))
POINT = TrialPoint(ModelSize(32, 2, 4), 48, 1e-3)


def test_no_trial_sees_the_test_split_of_any_window() -> None:
    frame = synthetic_indicator_frame(1500, seed=5)
    inputs = tuning_inputs(prepare_data(frame, CONFIG), CONFIG, SPACE, use_gpu=False, threads=1)
    last_seen = int(inputs.split.validation[-1])
    for window in SPACE.window_steps:
        data = prepare_data(frame, replace(CONFIG, window_steps=window))
        split = chronological_split(
            data.ends, CONFIG.train_fraction, CONFIG.validation_fraction, max(data.steps)
        )
        assert last_seen < int(split.test[0]), window


def test_a_trial_gets_windows_of_its_own_length_from_the_split() -> None:
    frame = synthetic_indicator_frame(1500, seed=5)
    inputs = tuning_inputs(prepare_data(frame, CONFIG), CONFIG, SPACE, use_gpu=False, threads=1)
    train, validation = trial_sources(inputs, 48)
    assert train.window_steps == validation.window_steps == 48
    assert np.isin(train.ends, inputs.split.train).all()
    assert np.isin(validation.ends, inputs.split.validation).all()
    assert int(train.ends[0]) >= 47 and len(validation) == len(inputs.split.validation)
    assert next(iter(train.batches(8)))["x"].shape[1] == 48


def test_the_best_trial_has_the_lowest_loss_of_any_epoch() -> None:
    first = TrialOutcome("t_00000", POINT, (0.9, 0.5))
    second = TrialOutcome("t_00001", POINT, (0.6,))  # stopped early by ASHA
    third = TrialOutcome("t_00002", POINT, (0.7, 0.5, 0.55))
    assert best_trial((first, second, third)) is first  # a tie goes to the earlier trial
    assert best_trial((second, TrialOutcome("t_00003", POINT, ()))) is second
    with pytest.raises(ValueError, match="no trials"):
        best_trial(())


def test_the_run_records_the_search_and_the_best_point() -> None:
    best = TrialOutcome("t_00001", POINT, (0.8, 0.4))
    outcome = TuneOutcome(
        (TrialOutcome("t_00000", POINT, (0.9,)), best), best, "AsyncHyperBandScheduler", 4, 1
    )
    params = outcome.params()
    assert params["tune_trials"] == 2 and params["tune_scheduler"] == "AsyncHyperBandScheduler"
    assert params["tune_best_trial_id"] == "t_00001" and params["tune_max_t"] == 4
    assert {k: params[f"tuned_{k}"] for k in POINT.params()} == POINT.params()
    assert outcome.metrics() == {"tune_best_val_loss": 0.4}


def test_tune_options_are_checked() -> None:
    with pytest.raises(ValueError, match="trials"):
        TuneOptions(trials=0, storage_dir=Path("x"), run_name="r")
    with pytest.raises(ValueError, match="grace_period"):
        TuneOptions(trials=2, storage_dir=Path("x"), run_name="r", grace_period=0)
