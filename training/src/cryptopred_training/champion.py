"""The current champion, loaded as data (model card and state file, see `registry`) and scored
on the new run's test split."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from cryptopred_training.config import TrainConfig
from cryptopred_training.evaluation import forecast_metrics
from cryptopred_training.features import IndexArray, compute_features, gather_windows
from cryptopred_training.pipeline import PreparedData
from cryptopred_training.predictor import PricePredictor

log = logging.getLogger(__name__)


def predictor_test_mae(
    predictor: PricePredictor,
    frame: pd.DataFrame,
    data: PreparedData,
    ends: IndexArray,
    horizon_seconds: int,
    batch_size: int = 1024,
) -> float | None:
    """MAE of the predictor's median price at `horizon_seconds` on the window ends `ends`.

    None when the predictor has no such horizon. Windows are built from the whole frame, so
    each window's first return uses the true previous close (as in training).
    """
    if horizon_seconds not in predictor.horizon_seconds:
        return None
    j = predictor.horizon_seconds.index(horizon_seconds)
    ends = ends[ends >= predictor.window_steps - 1]
    columns = list(predictor.feature_columns)
    features = predictor.normalizer.transform(compute_features(frame)[columns].to_numpy(np.float64))
    scale = float(predictor.normalizer.target_scale[j])
    chunks = []
    with torch.no_grad():
        for start in range(0, len(ends), batch_size):
            x = gather_windows(features, ends[start : start + batch_size], predictor.window_steps)
            chunks.append(predictor.model(torch.from_numpy(x))[:, j, :].numpy().astype(np.float64))
    predicted = np.concatenate(chunks)[:, None, :] * scale
    target_column = data.steps.index(horizon_seconds // predictor.candle_seconds)
    actual = data.targets[ends][:, [target_column]]
    metrics = forecast_metrics(data.close[ends], actual, predicted, (horizon_seconds,))
    return metrics[f"mae_{horizon_seconds}s"]


def load_champion(tracking_uri: str, name: str) -> PricePredictor | None:
    """`<name>@champion` as a PricePredictor, or None when there is no champion yet or it is
    not a cryptopred model of a known format (then it is not compared)."""
    from cryptopred_training.model_card import UnknownModelFormatError
    from cryptopred_training.registry import alias_version, load_registered_predictor

    version = alias_version(tracking_uri, name, "champion")
    if version is None:
        log.info("no champion of %s to compare with", name)
        return None
    try:
        return load_registered_predictor(tracking_uri, name, version)
    except UnknownModelFormatError as exc:
        log.warning("the champion is not compared: %s", exc)
        return None


def champion_test_mae(
    tracking_uri: str,
    name: str,
    frame: pd.DataFrame,
    data: PreparedData,
    test_ends: IndexArray,
    config: TrainConfig,
) -> float | None:
    predictor = load_champion(tracking_uri, name)
    if predictor is None or predictor.candle_seconds != config.candle_seconds:
        return None
    return predictor_test_mae(predictor, frame, data, test_ends, config.horizon_seconds[0])
