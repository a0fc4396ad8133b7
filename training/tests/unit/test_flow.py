"""The training flow's seams: the run's fit and every walk-forward fold's go through the fitters
passed in (the job passes Ray Train fitters with the run's workers and devices)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from cryptopred_training.config import TrainConfig
from cryptopred_training.features import WindowSource
from cryptopred_training.flow import prepare_data, train_and_decide
from cryptopred_training.models.transformer import CausalTransformer
from cryptopred_training.steps import EpochReport, FitResult, fit
from cryptopred_training.synthetic import synthetic_indicator_frame

CONFIG = TrainConfig(
    horizon_seconds=(60, 300),
    window_steps=12,
    batch_size=128,
    max_epochs=2,
    walk_forward_folds=3,
    walk_forward_max_epochs=1,
    min_rows=100,
    baseline_history_steps=240,
    seed=2,
)


class RecordingFitter:
    """`steps.fit`, remembering the sizes and epochs of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []

    def __call__(
        self,
        model: CausalTransformer,
        train: WindowSource,
        validation: WindowSource,
        config: TrainConfig,
        on_epoch: Callable[[EpochReport], None] | None = None,
    ) -> FitResult:
        self.calls.append((len(train), len(validation), config.max_epochs))
        return fit(model, train, validation, config, on_epoch)


def test_folds_are_fitted_by_the_walk_forward_fitter() -> None:
    data = prepare_data(synthetic_indicator_frame(1500, seed=4), CONFIG)
    main, folds = RecordingFitter(), RecordingFitter()

    outcome = train_and_decide(data, CONFIG, fitter=main, walk_forward_fitter=folds)

    assert main.calls == [(len(outcome.split.train), len(outcome.split.validation), 2)]
    assert outcome.walk_forward is not None and len(outcome.walk_forward.folds) == 3
    assert [epochs for _, _, epochs in folds.calls] == [1, 1, 1]
    fold_train_sizes = [n_fit + n_val for n_fit, n_val, _ in folds.calls]
    # expanding windows: each fold fits on more rows than the one before
    assert fold_train_sizes == sorted(fold_train_sizes) and len(set(fold_train_sizes)) == 3


def test_with_window_equals_preparing_the_series_at_that_window() -> None:
    from cryptopred_training.flow import with_window

    frame = synthetic_indicator_frame(1500, seed=7)
    config = TrainConfig(horizon_seconds=(60, 300), window_steps=24, min_rows=100)
    shorter = with_window(prepare_data(frame, config), 12)
    direct = prepare_data(frame, replace(config, window_steps=12))
    assert np.array_equal(shorter.ends, direct.ends) and len(shorter.ends) > 0
    assert shorter.summary["n_windows"] == direct.summary["n_windows"] == len(direct.ends)
    assert np.array_equal(shorter.features, direct.features, equal_nan=True)
