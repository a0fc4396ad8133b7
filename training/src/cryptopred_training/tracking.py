"""MLflow: one run per training, the pyfunc model, its registered version, tags and alias.

Layout: experiment = registered model name (`BTC-USD-60s`); run params (TrainConfig, pair,
data range, Ray scaling, promotion reason), per-epoch metrics (step = epoch), evaluation
metrics `test_<model>_<metric>` and `wf_<model>_<metric>`, artifacts `data_validation.json`,
`plots/*.png`, the transformer `model` and the run's best volatility baseline `baseline_model`
(each logged from code with its state file and model card, see `mlflow_model`), both
registered as versions of `name` with the tag `model_kind`; aliases `champion` (served),
`challenger` (a transformer that was not promoted) and `baseline` (the latest best baseline).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptopred_training.config import TrainConfig
from cryptopred_training.flow import PreparedData, TrainingOutcome, predict_returns
from cryptopred_training.mlflow_quiet import quiet_mlflow
from cryptopred_training.plots import (
    plot_calibration,
    plot_loss_curves,
    plot_predictions,
    plot_skill,
)
from cryptopred_training.retrain.history import VERSION_TAG
from cryptopred_training.source import COLUMNS

CHAMPION = "champion"
CHALLENGER = "challenger"
BASELINE = "baseline"
MODEL_ARTIFACT = "model"
BASELINE_ARTIFACT = "baseline_model"
VALIDATION_ARTIFACT = "data_validation.json"


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    experiment_id: str
    version: str
    alias: str
    baseline_version: str
    champion_version: str | None  # what `champion` points at after the run


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
        "model_kind": "transformer",
        "test_loss": repr(outcome.gate[0].loss),
        "loss_name": outcome.gate[0].loss_name,
    }
    for seconds in config.horizon_seconds:
        tags[f"test_mae_{seconds}s"] = repr(outcome.test_metrics["transformer"][f"mae_{seconds}s"])
    return tags


def baseline_tags(outcome: TrainingOutcome, config: TrainConfig, pair: str) -> dict[str, str]:
    """The tags of the run's best baseline version: the same contract, its own shape."""
    kind = outcome.baseline_predictor.kind
    served = outcome.decision.served == "baseline"
    tags = {
        **version_tags(outcome, config, pair),
        "window_steps": str(outcome.baseline_predictor.window_steps),
        "model_kind": "baseline",
        "baseline": kind,
        "decision": CHAMPION if served else BASELINE,
        "test_loss": repr(outcome.gate[0].baseline_loss),
    }
    for seconds in config.horizon_seconds:
        tags[f"test_mae_{seconds}s"] = repr(outcome.test_metrics[kind][f"mae_{seconds}s"])
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


@quiet_mlflow()  # MLflow's prints and INFO lines stay out of the terminal
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
    champion_loss: float | None,
    run_tags: dict[str, str] | None = None,
    run_id: str | None = None,
) -> LoggedModel:
    """Log the run and the model, register it as `name` and set its tags and alias; into the
    open run `run_id` (one that Ray Tune's trials nest under) when given."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from cryptopred_training.mlflow_model import log_price_model

    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.set_experiment(name)
    tags = version_tags(outcome, config, pair)
    with mlflow.start_run(run_id=run_id, experiment_id=experiment.experiment_id) as run:
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
                "served": outcome.decision.served,
                "best_baseline": outcome.baseline_predictor.kind,
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
        metrics |= gate_metrics(outcome)
        if champion_loss is not None:
            metrics["champion_test_loss"] = champion_loss
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
            plot_calibration(
                plots, data.targets[test], predicted, config.quantiles, config.horizon_seconds
            )
            plot_skill(
                plots,
                outcome.test_metrics["transformer"],
                [name for name in predicted if name != "transformer"],
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
            baseline_folder = Path(folder) / "baseline"
            baseline_folder.mkdir()
            baseline_info = log_price_model(
                outcome.baseline_predictor,
                baseline_folder,
                artifact_name=BASELINE_ARTIFACT,
                example=input_example(frame, outcome.baseline_predictor.window_steps),
                pip_requirements=_requirements(),
                registered_model_name=name,
            )
    version = str(info.registered_model_version)
    baseline_version = str(baseline_info.registered_model_version)
    client = MlflowClient(tracking_uri=tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    for key, value in baseline_tags(outcome, config, pair).items():
        client.set_model_version_tag(name, baseline_version, key, value)
    client.set_tag(run.info.run_id, VERSION_TAG, version)
    alias = CHAMPION if outcome.decision.promote else CHALLENGER
    client.set_registered_model_alias(name, alias, version)
    client.set_registered_model_alias(name, BASELINE, baseline_version)
    if outcome.decision.served == "baseline":
        client.set_registered_model_alias(name, CHAMPION, baseline_version)
    champion = {"transformer": version, "baseline": baseline_version}.get(outcome.decision.served)
    if champion is None:
        try:
            champion = str(client.get_model_version_by_alias(name, CHAMPION).version)
        except Exception:
            champion = None
    return LoggedModel(
        run.info.run_id, experiment.experiment_id, version, alias, baseline_version, champion
    )


def gate_metrics(outcome: TrainingOutcome) -> dict[str, float]:
    """The gate's numbers per evaluation: `gate_test_loss`, `gate_test_baseline_loss`,
    `gate_test_dm_p`, `gate_test_dm_stat`, `gate_test_coverage_60s` (and `gate_wf_*`)."""
    out: dict[str, float] = {}
    for evidence in outcome.gate:
        prefix = "gate_test" if evidence.where == "test" else "gate_wf"
        out[f"{prefix}_loss"] = evidence.loss
        out[f"{prefix}_baseline_loss"] = evidence.baseline_loss
        out[f"{prefix}_dm_p"] = evidence.p_value
        if math.isfinite(evidence.dm_statistic):
            out[f"{prefix}_dm_stat"] = evidence.dm_statistic
        for seconds, coverage in zip(
            outcome.predictor.horizon_seconds, evidence.coverage, strict=True
        ):
            out[f"{prefix}_coverage_{seconds}s"] = coverage
    return out


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
