"""TrainSettings: the platform Settings plus the trainer's knobs (`CRYPTOPRED_TRAIN_*`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cryptopred_core.settings import Settings
from cryptopred_training.config import TrainConfig
from cryptopred_training.retrain.schedule import parse_duration_s, parse_every_s

_DEFAULTS = TrainConfig()


class TrainSettings(Settings):
    """Env var = `CRYPTOPRED_` + field name in capitals, e.g. CRYPTOPRED_TRAIN_MAX_EPOCHS."""

    train_max_epochs: int = Field(_DEFAULTS.max_epochs, ge=1, description="epochs at most")
    train_patience: int = Field(_DEFAULTS.patience, ge=1, description="early-stopping patience")
    train_batch_size: int = Field(_DEFAULTS.batch_size, ge=1, description="samples per batch")
    train_learning_rate: float = Field(_DEFAULTS.learning_rate, gt=0, description="AdamW rate")
    train_window_steps: int = Field(_DEFAULTS.window_steps, ge=2, description="candles per window")
    train_d_model: int = Field(_DEFAULTS.d_model, ge=1, description="transformer width")
    train_n_layers: int = Field(_DEFAULTS.n_layers, ge=1, description="transformer layers")
    train_walk_forward_folds: int = Field(
        _DEFAULTS.walk_forward_folds, ge=0, description="walk-forward folds (0: none)"
    )
    train_walk_forward_max_epochs: int = Field(
        _DEFAULTS.walk_forward_max_epochs, ge=0, description="epochs per fold (0: max_epochs)"
    )
    train_promotion_margin: float = Field(
        _DEFAULTS.promotion_margin,
        ge=0,
        lt=1,
        description="share of the best baseline's loss to beat it by",
    )
    train_promotion_loss: Literal["pinball", "interval_score", "mae"] = Field(
        "pinball", description="the gate's loss: mean pinball, interval score or median MAE"
    )
    train_promotion_p_value: float = Field(
        _DEFAULTS.promotion_p_value, gt=0, lt=1, description="Diebold-Mariano p the gate needs"
    )
    train_coverage_low: float = Field(
        _DEFAULTS.coverage_low, ge=0, le=1, description="lowest 80 % coverage the gate accepts"
    )
    train_coverage_high: float = Field(
        _DEFAULTS.coverage_high, ge=0, le=1, description="highest 80 % coverage the gate accepts"
    )
    train_baseline_history_steps: int = Field(
        _DEFAULTS.baseline_history_steps,
        ge=3,
        le=1000,
        description="candles a baseline's interval uses (at most 1000: a POST's rows)",
    )
    train_min_rows: int = Field(_DEFAULTS.min_rows, ge=1, description="fewest rows to train on")
    train_seed: int = Field(_DEFAULTS.seed, description="random seed")
    train_trials: int = Field(1, ge=1, description="Ray Tune trials (1: no search)")
    train_tune_concurrency: int = Field(1, ge=1, description="Ray Tune trials running at once")
    train_workers: int = Field(1, ge=1, description="Ray Train workers")
    train_use_gpu: bool = Field(False, description="one GPU per Ray Train worker")
    train_cpus_per_worker: int | None = Field(
        None, ge=1, description="CPUs per worker (default: the free CPUs / workers)"
    )
    train_storage_dir: Path | None = Field(
        None, description="Ray Train storage (default: <data_dir>/ray_results)"
    )
    train_max_rss_mb: int | None = Field(
        None, ge=64, description="a Ray Train worker above this resident memory fails the run"
    )
    train_nice: int = Field(
        0, ge=0, le=19, description="lower CPU priority of the run's processes (0: unchanged)"
    )
    train_lock_timeout_s: float = Field(
        7200.0, gt=0, description="how long a run waits for another one on this machine"
    )
    retrain_every: str = Field(
        "off", description="retrain each served model this often (6h, 30m; off: never)"
    )
    retrain_window: str = Field("7d", description="history each retraining run uses (7d, 36h)")
    retrain_after_demotion_s: float = Field(
        300.0, ge=0, description="retrain this soon after a champion is demoted"
    )
    retrain_timeout_s: float = Field(
        3600.0, gt=0, description="a retraining run still going after this is stopped"
    )
    retrain_max_rss_mb: int = Field(
        4096, ge=64, description="a retraining run whose processes use more memory is stopped"
    )
    retrain_poll_s: float = Field(10.0, gt=0, description="how often the scheduler looks")

    @field_validator("retrain_every")
    @classmethod
    def _every_is_duration(cls, value: str) -> str:
        parse_every_s(value)
        return value

    @field_validator("retrain_window")
    @classmethod
    def _window_is_duration(cls, value: str) -> str:
        parse_duration_s(value)
        return value

    @model_validator(mode="after")
    def _coverage_band(self) -> TrainSettings:
        if not self.train_coverage_low < self.train_coverage_high:
            raise ValueError(
                f"train_coverage_low ({self.train_coverage_low}) must be below "
                f"train_coverage_high ({self.train_coverage_high})"
            )
        return self

    @property
    def retrain_every_s(self) -> float | None:
        """Seconds between retraining runs of one model; None when retraining is off."""
        return parse_every_s(self.retrain_every)

    @property
    def retrain_window_s(self) -> float:
        return parse_duration_s(self.retrain_window)

    @property
    def storage_dir(self) -> Path:
        return (self.train_storage_dir or self.data_dir / "ray_results").resolve()

    def train_config(
        self, *, candle_seconds: int, horizon_seconds: tuple[int, ...] | None = None
    ) -> TrainConfig:
        """TrainConfig with this width, horizons and every CRYPTOPRED_TRAIN_* override."""
        return replace(
            _DEFAULTS,
            candle_seconds=candle_seconds,
            horizon_seconds=horizon_seconds or _DEFAULTS.horizon_seconds,
            max_epochs=self.train_max_epochs,
            patience=self.train_patience,
            batch_size=self.train_batch_size,
            learning_rate=self.train_learning_rate,
            window_steps=self.train_window_steps,
            d_model=self.train_d_model,
            d_ff=2 * self.train_d_model,
            n_layers=self.train_n_layers,
            walk_forward_folds=self.train_walk_forward_folds,
            walk_forward_max_epochs=self.train_walk_forward_max_epochs,
            promotion_margin=self.train_promotion_margin,
            promotion_loss=self.train_promotion_loss,
            promotion_p_value=self.train_promotion_p_value,
            coverage_low=self.train_coverage_low,
            coverage_high=self.train_coverage_high,
            baseline_history_steps=self.train_baseline_history_steps,
            min_rows=self.train_min_rows,
            seed=self.train_seed,
        )


def model_name(pair: str, candle_seconds: int) -> str:
    """`BTC/USD`, 60 -> `BTC-USD-60s`: the experiment and registered model name."""
    return f"{pair.strip().upper().replace('/', '-')}-{candle_seconds}s"
