"""MLflow: one run per training, the pyfunc model, its registered version, tags and alias.

Layout: experiment = registered model name (`BTC-USD-60s`); run params (TrainConfig, pair,
data range, Ray scaling, promotion reason), per-epoch metrics (step = epoch), evaluation
metrics `test_<model>_<metric>` and `wf_<model>_<metric>`, artifacts `data_validation.json`,
`plots/*.png` and the model `model` (logged from code with its state file and model card, see
`mlflow_model`); version tags and alias `champion` or `challenger`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptopred_training.config import TrainConfig
from cryptopred_training.pipeline import PreparedData, TrainingOutcome, predict_returns
from cryptopred_training.plots import plot_loss_curves, plot_predictions
from cryptopred_training.retrain.history import VERSION_TAG
from cryptopred_training.source import COLUMNS

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT = "model"
VALIDATION_ARTIFACT = "data_validation.json"


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    experiment_id: str
    version: str
    alias: str


def version_tags(outcome: TrainingOutcome, config: TrainConfig, pair: str) -> dict[str, str]:
    """The model-version tags the serving component reads (the contract)."""
    tags = {
        "window_steps": str(config.window_steps),
        "horizon_seconds": ",".join(str(h) for h in config.horizon_seconds),
        "candle_seconds": str(config.candle_seconds),
        "pair": pair,
        "trained_from_ms": str(outcome.summary["start_ms"]),
        "trained_to_ms": str(outcome.summary["end_ms"]),
        "decision": outcome.decision.decision,
        "reason": outcome.decision.reason,
    }
    for seconds in config.horizon_seconds:
        tags[f"test_mae_{seconds}s"] = repr(outcome.test_metrics["transformer"][f"mae_{seconds}s"])
    return tags


def evaluation_metrics(outcome: TrainingOutcome) -> dict[str, float]:
    metrics = {
        f"test_{model}_{key}": value
        for model, values in outcome.test_metrics.items()
        for key, value in values.items()
    }
    if outcome.walk_forward is not None:
        for model, values in outcome.walk_forward.mean.items():
            metrics.update({f"wf_{model}_{key}": value for key, value in values.items()})
    return metrics


def _requirements() -> list[str]:
    names = ("torch", "pandas", "numpy", "mlflow")
    return [f"{name}=={package_version(name).split('+')[0]}" for name in names]


def log_training(
    *,
    tracking_uri: str,
    name: str,
    pair: str,
    frame: pd.DataFrame,
    data: PreparedData,
    config: TrainConfig,
    outcome: TrainingOutcome,
    extra_params: dict[str, Any],
    extra_metrics: dict[str, float],
    champion_test_mae: float | None,
    run_tags: dict[str, str] | None = None,
) -> LoggedModel:
    """Log the run and the model, register it as `name` and set its tags and alias."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from cryptopred_training.mlflow_model import log_price_model

    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.set_experiment(name)
    tags = version_tags(outcome, config, pair)
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        mlflow.log_params(
            {
                **config.to_params(),
                "pair": pair,
                "trained_from_ms": tags["trained_from_ms"],
                "trained_to_ms": tags["trained_to_ms"],
                "n_rows": outcome.summary["n_rows"],
                "n_windows": outcome.summary["n_windows"],
                "n_train": len(outcome.split.train),
                "n_validation": len(outcome.split.validation),
                "n_test": len(outcome.split.test),
                "best_epoch": outcome.models.fit_result.best_epoch,
                "decision": outcome.decision.decision,
                "promotion_reason": outcome.decision.reason,
                **extra_params,
            }
        )
        mlflow.set_tags(
            {
                k: tags[k]
                for k in (
                    "pair",
                    "candle_seconds",
                    "decision",
                    "reason",
                    "trained_from_ms",
                    "trained_to_ms",
                )
            }
        )
        mlflow.set_tags(run_tags or {})
        for report in outcome.models.fit_result.history:
            mlflow.log_metrics(
                {
                    "train_loss": report.train_loss,
                    "val_loss": report.validation["loss"],
                    "val_mae": report.validation["mae"],
                    "val_coverage": report.validation["coverage"],
                    "epoch_seconds": report.seconds,
                    "samples_per_second": report.samples_per_second,
                },
                step=report.epoch,
            )
        metrics = {**evaluation_metrics(outcome), **extra_metrics}
        if champion_test_mae is not None:
            metrics["champion_test_mae"] = champion_test_mae
        mlflow.log_metrics(metrics)
        mlflow.log_dict(_plain(outcome.summary), VALIDATION_ARTIFACT)
        with tempfile.TemporaryDirectory() as folder:
            plots = Path(folder) / "plots"
            plot_loss_curves(plots, outcome.models.fit_result.history)
            test = outcome.split.test
            predicted = predict_returns(outcome.models, data, test, config)
            end_ms = data.window_start_ms[test] + config.candle_seconds * 1000
            plot_predictions(
                plots,
                end_ms,
                data.close[test],
                data.targets[test],
                predicted["transformer"],
                config.horizon_seconds,
            )
            mlflow.log_artifacts(str(plots), "plots")
            model_folder = Path(folder) / "model"
            model_folder.mkdir()
            info = log_price_model(
                outcome.predictor,
                model_folder,
                artifact_name=MODEL_ARTIFACT,
                example=input_example(frame, config.window_steps),
                pip_requirements=_requirements(),
                registered_model_name=name,
            )
    version = str(info.registered_model_version)
    client = MlflowClient(tracking_uri=tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_tag(run.info.run_id, VERSION_TAG, version)
    alias = CHAMPION if outcome.decision.promote else CHALLENGER
    client.set_registered_model_alias(name, alias, version)
    return LoggedModel(run.info.run_id, experiment.experiment_id, version, alias)


def input_example(frame: pd.DataFrame, window_steps: int) -> pd.DataFrame:
    """The last window of rows with the DB's column types (MLflow's schema check refuses
    int64 where double was logged, so integers stay integers)."""
    return frame[list(COLUMNS)].iloc[-window_steps:].reset_index(drop=True)


def _plain(value: Any) -> Any:
    """JSON-ready copy of the validation summary (numpy scalars to Python)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
