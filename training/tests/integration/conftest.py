"""Helpers for the training integration tests: rows into the DB, the CLI's environment and
Ray Train's controller handles."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cryptopred_core.db import connect, upsert
from cryptopred_core.settings import Settings
from cryptopred_training.config import TrainConfig

#: a small Ray Train fit: two epochs of a 12-step window, no walk-forward
RAY_FIT_CONFIG = TrainConfig(
    horizon_seconds=(60, 300),
    window_steps=12,
    batch_size=64,
    max_epochs=2,
    patience=10,
    walk_forward_folds=0,
    min_rows=100,
)


def write_rows(settings: Settings, frame: pd.DataFrame) -> None:
    """Upsert IndicatorRow-shaped rows (NaN as NULL) into technical_indicators."""
    plain = frame.astype(object).where(frame.notna(), None)
    with connect(settings.db_url) as conn:
        upsert(conn, "technical_indicators", plain.to_dict("records"), "postgres")


@pytest.fixture
def train_env(postgres: Settings, mlflow_server: Settings, tmp_path: Path) -> dict[str, str]:
    """CRYPTOPRED_* variables for a small, quick run against the session's DB and MLflow."""
    return {
        "CRYPTOPRED_DATABASE_URL": postgres.db_url,
        "CRYPTOPRED_MLFLOW_TRACKING_URI": mlflow_server.mlflow_uri,
        "CRYPTOPRED_DATA_DIR": str(tmp_path),
        "CRYPTOPRED_RAY_PORT": str(postgres.ray_port),
        "CRYPTOPRED_TRAIN_WINDOW_STEPS": "24",
        "CRYPTOPRED_TRAIN_BATCH_SIZE": "64",
        "CRYPTOPRED_TRAIN_MAX_EPOCHS": "6",
        "CRYPTOPRED_TRAIN_WALK_FORWARD_MAX_EPOCHS": "0",
        "CRYPTOPRED_TRAIN_WALK_FORWARD_FOLDS": "2",
        "CRYPTOPRED_TRAIN_PROMOTION_MARGIN": "0.02",
        "CRYPTOPRED_TRAIN_SEED": "1",
        "CRYPTOPRED_TRAIN_CPUS_PER_WORKER": "1",
    }


def train_controller_handles() -> list[Any]:
    """Ray Train controller actor handles still reachable in this process."""
    import ray.actor

    gc.collect()
    return [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, ray.actor.ActorHandle)
        and obj._ray_actor_creation_function_descriptor.class_name == "TrainController"
    ]
