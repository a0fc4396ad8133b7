"""The MLflow pyfunc model of a forecaster (PricePredictor or BaselinePredictor), logged as code
plus data.

`log_price_model` logs the model "from code": the model is `pyfunc_code.py` (which calls
`mlflow.models.set_model(PricePredictorModel())`), its artifacts the predictor state file
(`predictor`: weights only, or a baseline's JSON) and the model card (`model_card`, see
`model_card`). No pickled Python object is written, so `mlflow.pyfunc.load_model` of a version
needs the cryptopred package installed and unpickles nothing; serving loads versions without
pyfunc (`registry`).

Input: a DataFrame with the IndicatorRow columns, at least `window_steps` rows, any order.
Output: PricePredictor.predict's DataFrame (OUTPUT_COLUMNS), one row per horizon.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel  # type: ignore[attr-defined]

from cryptopred_training.baseline_predictor import STATE_FILE, BaselinePredictor
from cryptopred_training.model_card import CARD_ARTIFACT, Forecaster, load_state, read_card

PREDICTOR_ARTIFACT = "predictor"
CODE_PATH = Path(__file__).with_name("pyfunc_code.py")


class PricePredictorModel(PythonModel):  # type: ignore[misc]
    """Loads the state file logged as the `predictor` artifact, as its model card says."""

    def __init__(self) -> None:
        self.predictor: Forecaster | None = None

    def load_context(self, context: Any) -> None:
        card = read_card(Path(context.artifacts[CARD_ARTIFACT]), "pyfunc")
        self.predictor = load_state(card, Path(context.artifacts[PREDICTOR_ARTIFACT]), "pyfunc")

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


def log_price_model(
    predictor: Forecaster,
    folder: Path,
    *,
    artifact_name: str,
    example: pd.DataFrame,
    pip_requirements: list[str],
    registered_model_name: str | None,
) -> Any:
    """Log `predictor` into the active run (state file and card written to `folder` first);
    MLflow's ModelInfo. Registered as `registered_model_name` when given."""
    import mlflow
    from mlflow.models import infer_signature

    from cryptopred_training.model_card import write_card

    state_name = STATE_FILE if isinstance(predictor, BaselinePredictor) else "predictor.pt"
    state_path = predictor.save(folder / state_name)
    card_path = write_card(predictor, state_path, folder)
    return mlflow.pyfunc.log_model(
        name=artifact_name,
        python_model=str(CODE_PATH),
        artifacts={PREDICTOR_ARTIFACT: str(state_path), CARD_ARTIFACT: str(card_path)},
        signature=infer_signature(example, predictor.predict(example)),
        input_example=example,
        pip_requirements=pip_requirements,
        registered_model_name=registered_model_name,
    )
