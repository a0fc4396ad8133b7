"""A plain-Python predictor holding everything needed to forecast from recent indicator rows.

MLflow's pyfunc wrapper (written elsewhere) loads `PricePredictor.load(path)` in
`load_context` and calls `predict(frame)`; nothing here imports mlflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cryptopred_training.features import FEATURE_COLUMNS, Normalizer, compute_features
from cryptopred_training.models.transformer import (
    CausalTransformer,
    TransformerSpec,
)

OUTPUT_COLUMNS = (
    "horizon_seconds",
    "window_end_ms",
    "target_ts_ms",
    "predicted_return",
    "predicted_close",
    "lower",
    "upper",
)


class PricePredictor:
    """The transformer's weights, its Normalizer, window length, horizons and feature list."""

    def __init__(
        self,
        *,
        spec: TransformerSpec,
        state_dict: dict[str, torch.Tensor],
        normalizer: Normalizer,
        horizon_seconds: Sequence[int],
        candle_seconds: int,
        feature_columns: Sequence[str] = FEATURE_COLUMNS,
    ) -> None:
        if len(horizon_seconds) != spec.n_horizons or len(feature_columns) != spec.n_features:
            raise ValueError("horizon_seconds/feature_columns do not match the model spec")
        self.spec = spec
        self.normalizer = normalizer
        self.horizon_seconds = tuple(int(h) for h in horizon_seconds)
        self.candle_seconds = candle_seconds
        self.feature_columns = tuple(feature_columns)
        self.model = CausalTransformer(spec)
        self.model.load_state_dict(state_dict)
        self.model.eval()

    @property
    def window_steps(self) -> int:
        return self.spec.window_steps

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One row per horizon from the last >= window_steps indicator rows (any order)."""
        if len(frame) < self.window_steps:
            raise ValueError(
                f"need at least {self.window_steps} indicator rows (window_steps), got {len(frame)}"
            )
        rows = frame.sort_values("window_start_ms").iloc[-self.window_steps :]
        features = compute_features(rows)[list(self.feature_columns)].to_numpy(dtype=np.float64)
        x = torch.from_numpy(self.normalizer.transform(features)).unsqueeze(0)
        with torch.no_grad():
            scaled = self.model(x)[0].numpy().astype(np.float64)
        returns = scaled * np.asarray(self.normalizer.target_scale)[:, None]
        close = float(rows["close"].iloc[-1])
        window_end_ms = int(rows["window_start_ms"].iloc[-1]) + self.candle_seconds * 1000
        return pd.DataFrame(
            {
                "horizon_seconds": list(self.horizon_seconds),
                "window_end_ms": window_end_ms,
                "target_ts_ms": [window_end_ms + h * 1000 for h in self.horizon_seconds],
                "predicted_return": returns[:, 1],
                "predicted_close": close * np.exp(returns[:, 1]),
                "lower": close * np.exp(returns[:, 0]),
                "upper": close * np.exp(returns[:, 2]),
            },
            columns=list(OUTPUT_COLUMNS),
        )

    def state(self) -> dict[str, Any]:
        """Plain values and tensors only; loadable with torch.load(weights_only=True)."""
        return {
            "spec": self.spec.to_dict(),
            "state_dict": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "normalizer": self.normalizer.to_dict(),
            "horizon_seconds": list(self.horizon_seconds),
            "candle_seconds": self.candle_seconds,
            "feature_columns": list(self.feature_columns),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PricePredictor:
        return cls(
            spec=TransformerSpec(**state["spec"]),
            state_dict=state["state_dict"],
            normalizer=Normalizer.from_dict(state["normalizer"]),
            horizon_seconds=state["horizon_seconds"],
            candle_seconds=int(state["candle_seconds"]),
            feature_columns=state["feature_columns"],
        )

    def save(self, path: Path) -> Path:
        torch.save(self.state(), path)
        return path

    @classmethod
    def load(cls, path: Path) -> PricePredictor:
        return cls.from_state(torch.load(path, weights_only=True))
