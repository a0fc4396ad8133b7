"""The current champion, loaded as data (model card and state file, see `registry`) and scored
on the new run's test split with the gate's loss."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from cryptopred_training.baseline_predictor import BaselinePredictor
from cryptopred_training.config import TrainConfig
from cryptopred_training.features import (
    FloatArray,
    IndexArray,
    compute_features,
    gather_windows,
)
from cryptopred_training.flow import PreparedData
from cryptopred_training.model_card import Forecaster
from cryptopred_training.predictor import PricePredictor
from cryptopred_training.promotion import per_origin_loss

log = logging.getLogger(__name__)


def transformer_returns(
    predictor: PricePredictor, frame: pd.DataFrame, ends: IndexArray, batch_size: int = 1024
) -> FloatArray:
    """(n, H, 3) log-return quantiles of the predictor at the rows `ends` of `frame`. Windows
    are built from the whole frame, so each window's first return uses the true previous close
    (as in training)."""
    columns = list(predictor.feature_columns)
    features = predictor.normalizer.transform(compute_features(frame)[columns].to_numpy(np.float64))
    scale = np.asarray(predictor.normalizer.target_scale)[None, :, None]
    chunks = []
    with torch.no_grad():
        for start in range(0, len(ends), batch_size):
            x = gather_windows(features, ends[start : start + batch_size], predictor.window_steps)
            chunks.append(predictor.model(torch.from_numpy(x)).numpy().astype(np.float64))
    out: FloatArray = np.concatenate(chunks) * scale
    return out


def forecaster_loss(
    forecaster: Forecaster,
    frame: pd.DataFrame,
    data: PreparedData,
    ends: IndexArray,
    config: TrainConfig,
) -> float | None:
    """The forecaster's mean gate loss on the window ends `ends`; None when it forecasts
    other candles or horizons than the run."""
    if forecaster.candle_seconds != config.candle_seconds or forecaster.horizon_seconds != tuple(
        config.horizon_seconds
    ):
        return None
    if isinstance(forecaster, BaselinePredictor):
        predicted = forecaster.predict_log_returns(data.close, ends)
    else:
        ends = ends[ends >= forecaster.window_steps - 1]
        predicted = transformer_returns(forecaster, frame, ends)
    losses = per_origin_loss(data.targets[ends], predicted, config.quantiles, config.promotion_loss)
    return float(losses.mean())


def load_champion(tracking_uri: str, name: str) -> Forecaster | None:
    """`<name>@champion`, or None when there is no champion yet or it is not a cryptopred
    model of a known format (then it is not compared)."""
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


def champion_loss(
    tracking_uri: str,
    name: str,
    frame: pd.DataFrame,
    data: PreparedData,
    test_ends: IndexArray,
    config: TrainConfig,
) -> float | None:
    """The current champion's gate loss on this run's test split (None: nothing comparable)."""
    forecaster = load_champion(tracking_uri, name)
    if forecaster is None:
        return None
    return forecaster_loss(forecaster, frame, data, test_ends, config)
