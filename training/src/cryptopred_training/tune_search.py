"""The Ray Tune search space, free of Ray: transformer size, window and learning rate.

A point is sampled with a seeded `random.Random`, so the same seed gives the same trials;
`apply_point` turns it into the `TrainConfig` a trial (and the winning run) trains with.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Any

from cryptopred_training.config import TrainConfig


@dataclass(frozen=True)
class ModelSize:
    """A consistent transformer shape: `n_heads` divides `d_model`."""

    d_model: int
    n_layers: int
    n_heads: int

    def __post_init__(self) -> None:
        if min(self.d_model, self.n_layers, self.n_heads) < 1:
            raise ValueError(f"model size values must be >= 1, got {self}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads {self.n_heads} must divide d_model {self.d_model}")

    @property
    def label(self) -> str:
        """`d32-l2-h4`: the name Ray Tune's `choice` samples."""
        return f"d{self.d_model}-l{self.n_layers}-h{self.n_heads}"

    @classmethod
    def parse(cls, label: str) -> ModelSize:
        """The size named by `label` (as written by `label`)."""
        try:
            d, layers, heads = label.split("-")
            if (d[0], layers[0], heads[0]) != ("d", "l", "h"):
                raise ValueError(label)
            return cls(int(d[1:]), int(layers[1:]), int(heads[1:]))
        except (ValueError, IndexError):
            raise ValueError(f"{label!r} is not a model size like d32-l2-h4") from None


#: small shapes that train in seconds on a CPU core
DEFAULT_SIZES: tuple[ModelSize, ...] = (
    ModelSize(16, 1, 2),
    ModelSize(32, 1, 4),
    ModelSize(32, 2, 4),
    ModelSize(64, 2, 8),
)


@dataclass(frozen=True)
class SearchSpace:
    """Sizes and windows to choose from; the learning rate is log-uniform in [min, max]."""

    sizes: tuple[ModelSize, ...] = DEFAULT_SIZES
    window_steps: tuple[int, ...] = (30, 60, 120)
    learning_rate_min: float = 3e-4
    learning_rate_max: float = 1e-2

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ValueError("the search space needs at least one model size")
        if not self.window_steps or min(self.window_steps) < 2:
            raise ValueError(f"window_steps choices must be >= 2, got {self.window_steps}")
        if not 0 < self.learning_rate_min < self.learning_rate_max:
            raise ValueError(
                "learning rates must satisfy 0 < min < max, got "
                f"{self.learning_rate_min}, {self.learning_rate_max}"
            )

    @classmethod
    def around(
        cls, config: TrainConfig, sizes: tuple[ModelSize, ...] = DEFAULT_SIZES
    ) -> SearchSpace:
        """Half, the same and double the configured window; a tenth to three times its rate."""
        window = config.window_steps
        windows = tuple(sorted({max(2, window // 2), window, 2 * window}))
        return cls(sizes, windows, config.learning_rate / 10, config.learning_rate * 3)


@dataclass(frozen=True)
class TrialPoint:
    """One sampled point of the space."""

    size: ModelSize
    window_steps: int
    learning_rate: float

    def to_tune(self) -> dict[str, Any]:
        """The point as a Ray Tune config (the keys of the param space)."""
        return {
            "size": self.size.label,
            "window_steps": self.window_steps,
            "learning_rate": self.learning_rate,
        }

    @classmethod
    def from_tune(cls, values: dict[str, Any]) -> TrialPoint:
        return cls(
            ModelSize.parse(str(values["size"])),
            int(values["window_steps"]),
            float(values["learning_rate"]),
        )

    def params(self) -> dict[str, int | float]:
        """The hyper-parameters it sets, by their TrainConfig names."""
        return {
            "d_model": self.size.d_model,
            "n_layers": self.size.n_layers,
            "n_heads": self.size.n_heads,
            "window_steps": self.window_steps,
            "learning_rate": self.learning_rate,
        }


def sample_point(space: SearchSpace, rng: random.Random) -> TrialPoint:
    """A size and a window drawn uniformly, a learning rate log-uniformly."""
    size = rng.choice(space.sizes)
    window = rng.choice(space.window_steps)
    low, high = math.log(space.learning_rate_min), math.log(space.learning_rate_max)
    return TrialPoint(size, window, math.exp(rng.uniform(low, high)))


def sample_points(space: SearchSpace, n: int, seed: int) -> list[TrialPoint]:
    """`n` points; the same space and seed give the same points."""
    if n < 1:
        raise ValueError(f"need at least one point, got {n}")
    rng = random.Random(seed)
    return [sample_point(space, rng) for _ in range(n)]


def apply_point(config: TrainConfig, point: TrialPoint) -> TrainConfig:
    """`config` with the point's size (feed-forward width 2 * d_model), window and rate;
    TrainConfig's checks run again."""
    return replace(
        config,
        d_model=point.size.d_model,
        n_layers=point.size.n_layers,
        n_heads=point.size.n_heads,
        d_ff=2 * point.size.d_model,
        window_steps=point.window_steps,
        learning_rate=point.learning_rate,
    )
