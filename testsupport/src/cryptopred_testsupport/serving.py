"""Helpers shared by the serving tests and the serving benchmark: a small registered champion,
synthetic indicator rows, reading `predictions` back, finding the Serve replicas.

Nothing here runs in the application; it needs the training package and a reachable MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd
from confluent_kafka import Consumer, TopicPartition

from cryptopred_core import topics
from cryptopred_core.records import IndicatorRow, Prediction, R, decode, field_names
from cryptopred_core.settings import Settings
from cryptopred_serving.pairs import model_name


def train_and_register(
    mlflow_uri: str,
    frame: pd.DataFrame,
    seed: int,
    *,
    pair: str,
    window_steps: int = 16,
    max_epochs: int = 2,
) -> str:
    """Train a tiny transformer on `frame`, register it and make it `champion`; its version.

    The alias is set whatever the promotion gate decided: tests need a transformer champion
    even where such small data does not beat the baselines. The run's best baseline (64 rows
    of history, so small frames can serve it) gets the alias `baseline`.
    """
    from mlflow import MlflowClient

    from cryptopred_training.config import TrainConfig
    from cryptopred_training.flow import prepare_data, run_training
    from cryptopred_training.tracking import log_training

    candle_seconds = int(frame["candle_seconds"].iloc[0])
    config = TrainConfig(
        candle_seconds=candle_seconds,
        window_steps=window_steps,
        max_epochs=max_epochs,
        d_model=16,
        d_ff=32,
        n_layers=1,
        walk_forward_folds=2,
        min_rows=200,
        max_nan_share=0.25,
        seed=seed,
        baseline_history_steps=64,
    )
    outcome = run_training(frame, config)
    name = model_name(pair, candle_seconds)
    logged = log_training(
        tracking_uri=mlflow_uri,
        name=name,
        pair=pair,
        frame=frame,
        data=prepare_data(frame, config),
        config=config,
        outcome=outcome,
        extra_params={},
        extra_metrics={},
        champion_loss=None,
    )
    MlflowClient(tracking_uri=mlflow_uri).set_registered_model_alias(
        name, "champion", logged.version
    )
    return logged.version


def plain(value: Any) -> Any:
    """A numpy scalar as a Python value; NaN as None."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value


def rows_of(frame: pd.DataFrame) -> list[IndicatorRow]:
    """The frame's rows as final IndicatorRow records."""
    names = field_names(IndicatorRow)
    return [
        IndicatorRow(**{k: plain(v) for k, v in rec.items() if k in names})
        for rec in frame.to_dict("records")
    ]


def read_topic(settings: Settings, topic: str = topics.PREDICTIONS) -> list[Prediction]:
    """Every prediction in `topic`, read with assign() until none came for 3 s."""
    return read_records(settings, topic, Prediction)


def read_records(settings: Settings, topic: str, kind: type[R]) -> list[R]:
    """Every record of `topic` decoded as `kind`, read with assign() until none came for 3 s."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "rd",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out = []
    while (msg := consumer.poll(3.0)) is not None:
        if msg.error() is None:
            out.append(decode(msg.value() or b"", kind))
    consumer.close()
    return out


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str = "condition") -> None:
    """Poll `predicate` every 0.25 s until it is truthy; AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what} not reached within {timeout_s} s")


def replica_actors(app_name: str, deployment: str) -> list[str]:
    """Names of the live Serve replica actors of one deployment (namespace `serve`)."""
    import ray

    prefix = f"SERVE_REPLICA::{app_name}#{deployment}#"
    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(prefix)
    )
