"""A plain-Python predictor holding everything needed to forecast from recent indicator rows.

MLflow's pyfunc wrapper (`mlflow_model`) loads `PricePredictor.load(path)` in `load_context`
and calls `predict(frame)`; serving loads it through `registry` after checking the model card.
Nothing here imports mlflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cryptopred_training.features import (
    FEATURE_COLUMNS,
    FloatArray,
    Normalizer,
    feature_arrays,
    frame_column,
    records_column,
)
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


def forecast_columns(
    returns: FloatArray,
    column: Callable[[str], FloatArray],
    candle_seconds: int,
    horizon_seconds: Sequence[int],
) -> dict[str, list[Any]]:
    """OUTPUT_COLUMNS as lists of plain numbers: `returns` holds one row per horizon of
    (lower, median, upper) log returns from the window's last close, which ends at the last
    candle's window end."""
    close = float(column("close")[-1])
    window_end_ms = int(column("window_start_ms")[-1]) + candle_seconds * 1000
    horizons = list(horizon_seconds)
    return {
        "horizon_seconds": horizons,
        "window_end_ms": [window_end_ms] * len(horizons),
        "target_ts_ms": [window_end_ms + h * 1000 for h in horizons],
        "predicted_return": returns[:, 1].tolist(),
        "predicted_close": (close * np.exp(returns[:, 1])).tolist(),
        "lower": (close * np.exp(returns[:, 0])).tolist(),
        "upper": (close * np.exp(returns[:, 2])).tolist(),
    }


class PricePredictor:
    """The transformer's weights, its Normalizer, window length, horizons and feature list."""

    model_kind = "transformer"

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

    @property
    def context_steps(self) -> int:
        """Rows the features of a window come from: the window and the row before it, whose
        close is the first row's previous close (`ret_1`), as in training. With only
        `window_steps` rows the first row's `ret_1` is log(close/open) instead."""
        return self.spec.window_steps + 1

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One row per horizon from the last >= window_steps indicator rows (any order); give
        `context_steps` rows for exactly the features training computed for that window."""
        self._check_length(len(frame))
        rows = frame.sort_values("window_start_ms").iloc[-self.context_steps :]
        forecasts = self._forecast(lambda column: frame_column(rows, column))
        return pd.DataFrame(forecasts, columns=list(OUTPUT_COLUMNS))

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """`predict` on indicator rows given as mappings (the HTTP API's and the DB's rows),
        without a DataFrame: the same numbers, one dict per horizon."""
        self._check_length(len(records))
        rows = sorted(records, key=lambda row: int(row["window_start_ms"]))[-self.context_steps :]
        forecasts = self._forecast(lambda column: records_column(rows, column))
        columns = list(forecasts.values())
        return [dict(zip(forecasts, values, strict=True)) for values in zip(*columns, strict=True)]

    def _check_length(self, n_rows: int) -> None:
        if n_rows < self.window_steps:
            raise ValueError(
                f"need at least {self.window_steps} indicator rows (window_steps), got {n_rows}"
            )

    def _forecast(self, column: Callable[[str], FloatArray]) -> dict[str, list[Any]]:
        """OUTPUT_COLUMNS as lists of plain numbers, from the window's columns."""
        arrays = feature_arrays(column)
        features = np.column_stack([arrays[name] for name in self.feature_columns])
        features = features[-self.window_steps :]  # the row before the window gave ret_1 only
        x = torch.from_numpy(self.normalizer.transform(features)).unsqueeze(0)
        with torch.no_grad():
            scaled = self.model(x)[0].numpy().astype(np.float64)
        returns = scaled * np.asarray(self.normalizer.target_scale)[:, None]
        return forecast_columns(returns, column, self.candle_seconds, self.horizon_seconds)

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
