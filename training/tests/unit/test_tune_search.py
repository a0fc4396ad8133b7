"""The Ray-free search space: sampling within bounds, consistent sizes, seeded points."""

from __future__ import annotations

import math
import random

import pytest

from cryptopred_training.config import TrainConfig
from cryptopred_training.tune_search import (
    ModelSize,
    SearchSpace,
    TrialPoint,
    apply_point,
    sample_point,
    sample_points,
)

SPACE = SearchSpace(
    sizes=(ModelSize(16, 1, 2), ModelSize(48, 2, 6), ModelSize(64, 3, 8)),
    window_steps=(12, 24, 48),
    learning_rate_min=1e-4,
    learning_rate_max=1e-2,
)


def test_samples_stay_inside_the_space() -> None:
    rng = random.Random(3)
    points = [sample_point(SPACE, rng) for _ in range(400)]
    assert {p.size for p in points} == set(SPACE.sizes)
    assert {p.window_steps for p in points} == set(SPACE.window_steps)
    rates = [p.learning_rate for p in points]
    assert all(1e-4 <= r <= 1e-2 for r in rates)
    # log-uniform: about half of the draws fall below the geometric middle (1e-3)
    below = sum(r < 1e-3 for r in rates) / len(rates)
    assert 0.4 < below < 0.6
    assert all(p.size.d_model % p.size.n_heads == 0 for p in points)


def test_the_same_seed_gives_the_same_points() -> None:
    assert sample_points(SPACE, 5, seed=11) == sample_points(SPACE, 5, seed=11)
    assert sample_points(SPACE, 5, seed=11) != sample_points(SPACE, 5, seed=12)
    with pytest.raises(ValueError, match="at least one"):
        sample_points(SPACE, 0, seed=1)


def test_a_point_becomes_a_valid_train_config() -> None:
    base = TrainConfig(window_steps=60, learning_rate=3e-3, max_epochs=7)
    point = TrialPoint(ModelSize(48, 3, 6), 24, 2.5e-4)
    config = apply_point(base, point)
    assert (config.d_model, config.n_layers, config.n_heads, config.d_ff) == (48, 3, 6, 96)
    assert config.window_steps == 24 and config.learning_rate == 2.5e-4
    assert config.max_epochs == 7 and config.horizon_seconds == base.horizon_seconds
    assert point.params() == {
        "d_model": 48,
        "n_layers": 3,
        "n_heads": 6,
        "window_steps": 24,
        "learning_rate": 2.5e-4,
    }


def test_a_point_round_trips_through_tune_config() -> None:
    point = TrialPoint(ModelSize(32, 2, 4), 30, 1.5e-3)
    assert point.to_tune() == {"size": "d32-l2-h4", "window_steps": 30, "learning_rate": 1.5e-3}
    assert TrialPoint.from_tune(point.to_tune()) == point
    with pytest.raises(ValueError, match="not a model size"):
        ModelSize.parse("32-2-4")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ModelSize(30, 2, 4), "must divide"),
        (lambda: ModelSize(32, 0, 4), ">= 1"),
        (lambda: SearchSpace(sizes=()), "at least one model size"),
        (lambda: SearchSpace(window_steps=(1, 24)), ">= 2"),
        (lambda: SearchSpace(learning_rate_min=1e-2, learning_rate_max=1e-3), "0 < min < max"),
    ],
)
def test_inconsistent_spaces_are_refused(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_the_space_around_a_config_halves_and_doubles_its_window() -> None:
    space = SearchSpace.around(TrainConfig(window_steps=24, learning_rate=2e-3))
    assert space.window_steps == (12, 24, 48)
    assert math.isclose(space.learning_rate_min, 2e-4)
    assert math.isclose(space.learning_rate_max, 6e-3)
    assert SearchSpace.around(TrainConfig(window_steps=3)).window_steps == (2, 3, 6)
