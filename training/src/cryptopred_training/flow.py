"""The Ray-free training flow: validate, build features, fit the models, score and decide.

A Ray Train loop replaces `train_models`'s call to `fit` with its own loop over `train_step`
and `eval_step`; everything else here is reusable as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from cryptopred_training.baseline_predictor import BaselinePredictor
from cryptopred_training.config import TrainConfig
from cryptopred_training.dataset import validate_indicator_frame
from cryptopred_training.evaluation import ModelMetrics, WalkForwardResult, forecast_metrics
from cryptopred_training.evaluation import walk_forward as run_walk_forward
from cryptopred_training.features import (
    FEATURE_COLUMNS,
    Normalizer,
    Split,
    WindowSource,
    chronological_split,
    compute_features,
    compute_targets,
    horizon_steps,
    valid_window_ends,
)
from cryptopred_training.models.baselines import PersistenceModel, RidgeModel, ridge_inputs
from cryptopred_training.models.transformer import (
    CausalTransformer,
    TransformerSpec,
    build_transformer,
    calibrate_intervals,
    warm_start_autoregressive,
)
from cryptopred_training.models.volatility import BASELINE_KINDS, VolatilityBaselines
from cryptopred_training.predictor import PricePredictor
from cryptopred_training.promotion import (
    GateEvidence,
    GateRule,
    PromotionDecision,
    decide_promotion,
    gate_evidence,
)
from cryptopred_training.scores import compare_to_baselines, quantile_scores
from cryptopred_training.steps import EpochReport, FitResult, fit

# fit(model, train, validation, config, on_epoch) -> FitResult; a Ray Train fit has this shape.
Fitter = Callable[
    [
        CausalTransformer,
        WindowSource,
        WindowSource,
        TrainConfig,
        Callable[[EpochReport], None] | None,
    ],
    FitResult,
]

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class PreparedData:
    """Raw (unnormalised) features, log-return targets and valid window ends of one series."""

    features: FloatArray
    targets: FloatArray
    close: FloatArray
    window_start_ms: IndexArray
    ends: IndexArray
    steps: tuple[int, ...]
    summary: dict[str, Any]


def prepare_data(frame: pd.DataFrame, config: TrainConfig) -> PreparedData:
    """Validate the rows (raising DataValidationError) and build features and targets."""
    summary = validate_indicator_frame(
        frame,
        candle_seconds=config.candle_seconds,
        min_rows=config.min_rows,
        max_nan_share=config.max_nan_share,
    )
    steps = horizon_steps(config.horizon_seconds, config.candle_seconds)
    features = compute_features(frame).to_numpy(dtype=np.float64)
    close = frame["close"].to_numpy(dtype=np.float64)
    targets = compute_targets(close, steps)
    ends = valid_window_ends(features, targets, config.window_steps)
    summary = {**summary, "n_windows": len(ends), "n_features": features.shape[1]}
    start_ms = frame["window_start_ms"].to_numpy(dtype=np.int64)
    return PreparedData(features, targets, close, start_ms, ends, steps, summary)


def with_window(data: PreparedData, window_steps: int) -> PreparedData:
    """The same prepared series with the window ends valid for `window_steps` (features and
    targets do not depend on the window)."""
    ends = valid_window_ends(data.features, data.targets, window_steps)
    return replace(data, ends=ends, summary={**data.summary, "n_windows": len(ends)})


def new_transformer(
    data: PreparedData, config: TrainConfig, train: WindowSource | None = None
) -> CausalTransformer:
    """An untrained transformer of `config`'s shape for `data`'s features and horizons; given
    the `train` windows, its autoregressive skip starts at their ridge fit."""
    spec = TransformerSpec(
        n_features=data.features.shape[1],
        n_horizons=len(data.steps),
        window_steps=config.window_steps,
        d_model=config.d_model,
        n_heads=config.n_heads,
        n_layers=config.n_layers,
        d_ff=config.d_ff,
        dropout=config.dropout,
        calibrated_intervals=True,
        autoregressive_feature=(
            FEATURE_COLUMNS.index("ret_1") if config.autoregressive_skip else None
        ),
    )
    model = build_transformer(spec, config.seed)
    if train is not None:
        batch = train.batch(train.ends)
        warm_start_autoregressive(model, batch["x"], batch["y"], config.ridge_alpha)
    return model


@dataclass
class TrainedModels:
    transformer: CausalTransformer
    normalizer: Normalizer
    persistence: PersistenceModel
    ridge: RidgeModel
    fit_result: FitResult
    volatility: VolatilityBaselines


def fit_normalizer(data: PreparedData, train_ends: IndexArray) -> Normalizer:
    """Fit on the rows up to the last train window end and the train targets only."""
    last = int(train_ends[-1])
    return Normalizer.fit(data.features[: last + 1], data.targets[train_ends])


def train_models(
    data: PreparedData,
    train_ends: IndexArray,
    validation_ends: IndexArray,
    config: TrainConfig,
    on_epoch: Callable[[EpochReport], None] | None = None,
    fitter: Fitter = fit,
) -> TrainedModels:
    """Fit the Normalizer (train rows only), both baselines and the transformer."""
    normalizer = fit_normalizer(data, train_ends)
    train = WindowSource.build(
        data.features, data.targets, train_ends, normalizer, config.window_steps
    )
    validation = WindowSource.build(
        data.features, data.targets, validation_ends, normalizer, config.window_steps
    )
    y_train = data.targets[train_ends]
    persistence = PersistenceModel.fit(y_train, config.quantiles)
    ridge = RidgeModel.fit(
        ridge_inputs(train.features, train_ends, config.ridge_steps),
        y_train,
        config.ridge_alpha,
        config.quantiles,
    )
    model = new_transformer(data, config, train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        result = fitter(model, train, validation, config, on_epoch)
    held_out = validation.batch(validation.ends)
    calibrate_intervals(
        model, held_out["x"], held_out["y"], config.quantiles[2] - config.quantiles[0]
    )
    volatility = VolatilityBaselines.fit(
        data.close, train_ends, y_train, data.steps, config.quantiles, config.baseline_history_steps
    )
    return TrainedModels(model, normalizer, persistence, ridge, result, volatility)


def predict_returns(
    models: TrainedModels, data: PreparedData, ends: IndexArray, config: TrainConfig
) -> dict[str, FloatArray]:
    """(n, H, 3) log-return quantiles of each model at the given window ends."""
    source = WindowSource.build(
        data.features, data.targets, ends, models.normalizer, config.window_steps
    )
    models.transformer.eval()
    chunks = []
    with torch.no_grad():
        for batch in source.batches(config.batch_size * 4):
            chunks.append(models.transformer(batch["x"]).numpy().astype(np.float64))
    scale = np.asarray(models.normalizer.target_scale)[None, :, None]
    return {
        "transformer": np.concatenate(chunks) * scale,
        "persistence": models.persistence.predict(len(ends)),
        "ridge": models.ridge.predict(ridge_inputs(source.features, ends, config.ridge_steps)),
        **models.volatility.predict(data.close, ends),
    }


def score_models(
    models: TrainedModels, data: PreparedData, ends: IndexArray, config: TrainConfig
) -> ModelMetrics:
    """forecast_metrics and quantile_scores of every model at the given window ends; the
    transformer's also hold its skill and Diebold-Mariano test against each baseline."""
    predicted = predict_returns(models, data, ends, config)
    actual = data.targets[ends]
    metrics = {
        name: forecast_metrics(data.close[ends], actual, p, config.horizon_seconds)
        | quantile_scores(actual, p, config.quantiles, config.horizon_seconds)
        for name, p in predicted.items()
    }
    metrics["transformer"] |= compare_to_baselines(
        actual,
        predicted,
        config.quantiles,
        horizon_steps(config.horizon_seconds, config.candle_seconds),
        config.horizon_seconds,
        candidate="transformer",
    )
    return metrics


@dataclass
class FoldForecasts:
    """Each walk-forward fold's realised returns and every model's forecasts, in fold order."""

    actual: list[FloatArray]
    predicted: list[dict[str, FloatArray]]

    def pooled(self) -> tuple[FloatArray, dict[str, FloatArray]]:
        names = self.predicted[0]
        return np.concatenate(self.actual), {
            name: np.concatenate([p[name] for p in self.predicted]) for name in names
        }


def gate_of(
    where: str, actual: FloatArray, predicted: dict[str, FloatArray], config: TrainConfig
) -> GateEvidence:
    """The transformer against the best volatility baseline on the gate's loss."""
    steps = horizon_steps(config.horizon_seconds, config.candle_seconds)
    return gate_evidence(
        where,
        actual,
        predicted,
        candidate="transformer",
        baselines=BASELINE_KINDS,
        levels=config.quantiles,
        max_steps=max(steps),
        loss=config.promotion_loss,
    )


def fold_fitter(
    data: PreparedData,
    config: TrainConfig,
    forecasts: FoldForecasts | None = None,
    fitter: Fitter = fit,
) -> Callable[[IndexArray, IndexArray], ModelMetrics]:
    """A fit_and_score for walk_forward: the fold's train tail becomes its validation split
    and `fitter` fits its transformer. Each fold's forecasts are appended to `forecasts` when
    given."""
    gap = max(data.steps)
    share = config.validation_fraction / (config.train_fraction + config.validation_fraction)

    def fit_and_score(train_ends: IndexArray, test_ends: IndexArray) -> ModelMetrics:
        n_fit = int(len(train_ends) * (1 - share))
        fit_ends = train_ends[:n_fit]
        validation_ends = train_ends[n_fit:]
        validation_ends = validation_ends[validation_ends > fit_ends[-1] + gap]
        fold_config = replace(
            config, max_epochs=config.walk_forward_max_epochs or config.max_epochs
        )
        models = train_models(data, fit_ends, validation_ends, fold_config, fitter=fitter)
        if forecasts is not None:
            forecasts.actual.append(data.targets[test_ends])
            forecasts.predicted.append(predict_returns(models, data, test_ends, config))
        return score_models(models, data, test_ends, config)

    return fit_and_score


@dataclass
class TrainingOutcome:
    summary: dict[str, Any]
    split: Split
    models: TrainedModels
    test_metrics: ModelMetrics
    walk_forward: WalkForwardResult | None
    decision: PromotionDecision
    predictor: PricePredictor
    gate: tuple[GateEvidence, ...]
    baseline_predictor: BaselinePredictor


def gate_rule(config: TrainConfig) -> GateRule:
    return GateRule(
        p_value=config.promotion_p_value,
        coverage_low=config.coverage_low,
        coverage_high=config.coverage_high,
        margin=config.promotion_margin,
    )


def baseline_predictor(models: TrainedModels, kind: str, config: TrainConfig) -> BaselinePredictor:
    """The fitted volatility baseline `kind` as a servable forecaster."""
    return BaselinePredictor(
        kind=kind,
        model=models.volatility.get(kind),
        horizon_seconds=config.horizon_seconds,
        candle_seconds=config.candle_seconds,
        history_steps=config.baseline_history_steps,
    )


def run_training(
    frame: pd.DataFrame,
    config: TrainConfig,
    *,
    champion_loss: float | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    fitter: Fitter = fit,
    walk_forward_fitter: Fitter = fit,
) -> TrainingOutcome:
    """Validate, split, train, score on test and in walk-forward, and decide promotion.

    `fitter` fits the run's transformer, `walk_forward_fitter` each fold's. `champion_loss` is
    the current champion's gate loss on this run's test split (see `champion.champion_loss`),
    None when there is none to compare."""
    return train_and_decide(
        prepare_data(frame, config),
        config,
        champion_loss=champion_loss,
        on_epoch=on_epoch,
        fitter=fitter,
        walk_forward_fitter=walk_forward_fitter,
    )


def train_and_decide(
    data: PreparedData,
    config: TrainConfig,
    *,
    champion_loss: float | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    fitter: Fitter = fit,
    walk_forward_fitter: Fitter = fit,
) -> TrainingOutcome:
    """`run_training` on prepared data (features, targets and window ends)."""
    gap = max(data.steps)
    split = chronological_split(data.ends, config.train_fraction, config.validation_fraction, gap)
    models = train_models(data, split.train, split.validation, config, on_epoch, fitter)
    test_metrics = score_models(models, data, split.test, config)
    evidence = [
        gate_of(
            "test",
            data.targets[split.test],
            predict_returns(models, data, split.test, config),
            config,
        )
    ]
    wf = None
    if config.walk_forward_folds > 0:
        forecasts = FoldForecasts([], [])
        wf = run_walk_forward(
            data.ends,
            config.walk_forward_folds,
            fold_fitter(data, config, forecasts, walk_forward_fitter),
            min_train_fraction=config.walk_forward_min_train_fraction,
            gap_steps=gap,
        )
        evidence.append(gate_of("walk-forward", *forecasts.pooled(), config))
    decision = decide_promotion(evidence, gate_rule(config), champion_loss=champion_loss)
    predictor = PricePredictor(
        spec=models.transformer.spec,
        state_dict=models.transformer.state_dict(),
        normalizer=models.normalizer,
        horizon_seconds=config.horizon_seconds,
        candle_seconds=config.candle_seconds,
        feature_columns=FEATURE_COLUMNS,
    )
    return TrainingOutcome(
        data.summary,
        split,
        models,
        test_metrics,
        wf,
        decision,
        predictor,
        tuple(evidence),
        baseline_predictor(models, evidence[0].baseline, config),
    )
