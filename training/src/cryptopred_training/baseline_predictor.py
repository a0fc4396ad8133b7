"""A volatility baseline as a servable forecaster: persistence for the median, an interval from
the last `history_steps` closes (see `models.volatility`).

It answers like `PricePredictor` (`predict`, `predict_records`, the same output columns), so
the registry, serving and the publisher treat both kinds alike; its state is plain JSON.
Nothing here imports mlflow or torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptopred_training.features import FloatArray, frame_column, records_column
from cryptopred_training.models.volatility import (
    BASELINE_KINDS,
    VolatilityModel,
    volatility_from_dict,
)
from cryptopred_training.predictor import OUTPUT_COLUMNS, forecast_columns

MODEL_KIND = "baseline"
STATE_FILE = "baseline.json"


class BaselinePredictor:
    """One fitted volatility baseline with the horizons and candle length it forecasts."""

    model_kind = MODEL_KIND

    def __init__(
        self,
        *,
        kind: str,
        model: VolatilityModel,
        horizon_seconds: Sequence[int],
        candle_seconds: int,
        history_steps: int,
    ) -> None:
        if kind not in BASELINE_KINDS:
            raise ValueError(f"unknown baseline kind {kind!r}; known: {', '.join(BASELINE_KINDS)}")
        steps = tuple(int(h) // candle_seconds for h in horizon_seconds)
        if steps != tuple(model.steps):
            raise ValueError(f"horizon steps {steps} differ from the model's {model.steps}")
        if history_steps <= max(steps) + 1:
            raise ValueError(f"history_steps {history_steps} must exceed the longest horizon")
        self.kind = kind
        self.model = model
        self.horizon_seconds = tuple(int(h) for h in horizon_seconds)
        self.candle_seconds = candle_seconds
        self.history_steps = history_steps

    @property
    def window_steps(self) -> int:
        """Rows a forecast needs: the history the interval is computed from."""
        return self.history_steps

    @property
    def context_steps(self) -> int:
        return self.history_steps

    @property
    def min_rows(self) -> int:
        """Fewest rows it forecasts from (fewer than `history_steps` give the interval of the
        rows there are, as training does for its first window ends)."""
        return max(self.model.steps) + 2

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return ("close",)

    def predict_log_returns(self, close: FloatArray, ends: Any) -> FloatArray:
        """(n, H, 3) log-return quantiles at the rows `ends` of the series `close`."""
        return self.model.predict(np.log(close), np.asarray(ends, dtype=np.int64))

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One row per horizon from the last `history_steps` rows (any order); give
        `window_steps` rows for exactly the interval training computed for that window."""
        self._check_length(len(frame))
        rows = frame.sort_values("window_start_ms").iloc[-self.history_steps :]
        forecasts = self._forecast(lambda column: frame_column(rows, column))
        return pd.DataFrame(forecasts, columns=list(OUTPUT_COLUMNS))

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """`predict` on rows given as mappings, one dict per horizon."""
        self._check_length(len(records))
        rows = sorted(records, key=lambda row: int(row["window_start_ms"]))[-self.history_steps :]
        forecasts = self._forecast(lambda column: records_column(rows, column))
        columns = list(forecasts.values())
        return [dict(zip(forecasts, values, strict=True)) for values in zip(*columns, strict=True)]

    def _check_length(self, n_rows: int) -> None:
        if n_rows < self.min_rows:
            raise ValueError(f"need at least {self.min_rows} indicator rows, got {n_rows}")

    def _forecast(self, column: Callable[[str], FloatArray]) -> dict[str, list[Any]]:
        close = column("close")
        if not np.all(np.isfinite(close)) or not np.all(close > 0):
            raise ValueError("close: every row needs a positive finite close")
        returns = self.predict_log_returns(close, [len(close) - 1])[0]
        return forecast_columns(returns, column, self.candle_seconds, self.horizon_seconds)

    def state(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "kind": self.kind,
            "horizon_seconds": list(self.horizon_seconds),
            "candle_seconds": self.candle_seconds,
            "history_steps": self.history_steps,
            "params": self.model.to_dict(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BaselinePredictor:
        """KeyError, TypeError or ValueError when the state is malformed."""
        horizon_seconds = [int(h) for h in state["horizon_seconds"]]
        candle_seconds = int(state["candle_seconds"])
        history_steps = int(state["history_steps"])
        steps = [h // candle_seconds for h in horizon_seconds]
        kind = str(state["kind"])
        model = volatility_from_dict(kind, dict(state["params"]), steps, history_steps)
        return cls(
            kind=kind,
            model=model,
            horizon_seconds=horizon_seconds,
            candle_seconds=candle_seconds,
            history_steps=history_steps,
        )

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(self.state(), indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> BaselinePredictor:
        return cls.from_state(json.loads(path.read_text()))
