"""The MLflow pyfunc wrapper of PricePredictor (importable wherever the package is installed).

Input: a DataFrame with the IndicatorRow columns, at least `window_steps` rows, any order.
Output: PricePredictor.predict's DataFrame (OUTPUT_COLUMNS), one row per horizon.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel  # type: ignore[attr-defined]

from cryptopred_training.predictor import PricePredictor

PREDICTOR_ARTIFACT = "predictor"


class PricePredictorModel(PythonModel):  # type: ignore[misc]
    """Loads the predictor state file logged as the `predictor` artifact."""

    def __init__(self) -> None:
        self.predictor: PricePredictor | None = None

    def load_context(self, context: Any) -> None:
        self.predictor = PricePredictor.load(Path(context.artifacts[PREDICTOR_ARTIFACT]))

    # MLflow reads predict's type hints as its input schema. A DataFrame hint is one it infers
    # no schema from, so the schema stays the signature logged with the model; without any hint
    # MLflow warned on every import ("Add type hints to the `predict` method ...").
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if self.predictor is None:
            self.load_context(context)
        assert self.predictor is not None
        return self.predictor.predict(pd.DataFrame(model_input))


def unwrap_predictor(pyfunc_model: Any) -> PricePredictor:
    """The PricePredictor inside a model loaded with `mlflow.pyfunc.load_model`.

    Serving calls its `predict_records` directly: MLflow's per-call schema enforcement and
    the DataFrame round trip cost more than the transformer itself on a 16-row window, and
    the API validates its rows already.
    """
    python_model = pyfunc_model.unwrap_python_model()
    if not isinstance(python_model, PricePredictorModel) or python_model.predictor is None:
        raise TypeError(f"not a loaded cryptopred price model: {type(python_model).__name__}")
    return python_model.predictor
