"""Training hyperparameters with defaults sized for a small CPU machine."""

from __future__ import annotations

from dataclasses import asdict, dataclass

DEFAULT_HORIZON_SECONDS: tuple[int, ...] = (60, 300, 900)
DEFAULT_QUANTILES: tuple[float, float, float] = (0.1, 0.5, 0.9)


@dataclass(frozen=True)
class TrainConfig:
    """Everything `fit` and the evaluation need besides the data; all plain values."""

    candle_seconds: int = 60
    horizon_seconds: tuple[int, ...] = DEFAULT_HORIZON_SECONDS
    window_steps: int = 60
    quantiles: tuple[float, float, float] = DEFAULT_QUANTILES
    # Data checks.
    min_rows: int = 500
    max_nan_share: float = 0.05
    # Chronological split (the rest is the test split).
    train_fraction: float = 0.7
    validation_fraction: float = 0.15
    # Transformer.
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 64
    dropout: float = 0.0
    # A linear autoregressive skip over the window's log returns, added to the median.
    autoregressive_skip: bool = True
    # Optimisation.
    batch_size: int = 256
    max_epochs: int = 4
    patience: int = 3
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    seed: int = 0
    # Baselines and evaluation.
    ridge_alpha: float = 1.0
    ridge_steps: int = 5
    walk_forward_folds: int = 2
    # Epochs of each walk-forward fold's fit (0: max_epochs); fewer keeps the backtest cheap.
    walk_forward_max_epochs: int = 2
    walk_forward_min_train_fraction: float = 0.5
    promotion_margin: float = 0.0
    # The gate: the loss compared, the Diebold-Mariano p-value to beat and the 80 % band.
    promotion_loss: str = "pinball"
    promotion_p_value: float = 0.05
    coverage_low: float = 0.75
    coverage_high: float = 0.85
    # Rows a volatility baseline's interval is computed from.
    baseline_history_steps: int = 720

    def __post_init__(self) -> None:
        if self.candle_seconds <= 0:
            raise ValueError(f"candle_seconds must be > 0, got {self.candle_seconds}")
        if not self.horizon_seconds or min(self.horizon_seconds) <= 0:
            raise ValueError(f"horizon_seconds must be positive, got {self.horizon_seconds}")
        if self.window_steps < 2:
            raise ValueError(f"window_steps must be >= 2, got {self.window_steps}")
        if not 0 < self.quantiles[0] < self.quantiles[1] < self.quantiles[2] < 1:
            raise ValueError(f"quantiles must be increasing in (0, 1), got {self.quantiles}")
        if self.train_fraction <= 0 or self.validation_fraction <= 0:
            raise ValueError("train_fraction and validation_fraction must be > 0")
        if self.train_fraction + self.validation_fraction >= 1:
            raise ValueError("train_fraction + validation_fraction must leave a test split (< 1)")
        if self.promotion_loss not in ("pinball", "interval_score", "mae"):
            raise ValueError(
                "promotion_loss must be pinball, interval_score or mae, "
                f"got {self.promotion_loss!r}"
            )
        if not 0 < self.promotion_p_value < 1:
            raise ValueError(f"promotion_p_value must be in (0, 1), got {self.promotion_p_value}")
        if not 0 <= self.coverage_low < self.coverage_high <= 1:
            raise ValueError(
                f"coverage band must satisfy 0 <= low < high <= 1, got "
                f"{self.coverage_low}-{self.coverage_high}"
            )
        longest = max(self.horizon_seconds) // self.candle_seconds
        if self.baseline_history_steps <= longest + 1:
            raise ValueError(
                f"baseline_history_steps {self.baseline_history_steps} must exceed the longest "
                f"horizon ({longest} steps) + 1"
            )
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} must be divisible by n_heads {self.n_heads}")

    def to_params(self) -> dict[str, str]:
        """Flat string parameters, ready for `mlflow.log_params`."""
        return {key: str(value) for key, value in asdict(self).items()}
