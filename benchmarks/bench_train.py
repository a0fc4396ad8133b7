"""Training benchmark: `cryptopred train` end to end, Ray Train fit vs a plain torch loop.

Run: .venv/bin/python benchmarks/bench_train.py [--rows 45000]
Starts its own PostgreSQL and MLflow on free ports in a temp dir (stopped at the end), writes
`--rows` synthetic one-minute indicator rows, runs `cryptopred train --pair BTC/USD
--candle-seconds 60` with default settings as a subprocess (a local Ray), then fits the same
transformer on the same windows for the same number of epochs in one process with `steps.fit`.
Prints rows, epochs, the end-to-end wall time, Ray Train fit time, plain loop time, their ratio
and the training throughput; also how long the DB read takes with psycopg and with Ray Data.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from cryptopred.stack.parts import Mlflow, Postgres
from cryptopred_core.db import connect, create_schema, upsert
from cryptopred_core.ports import free_port
from cryptopred_core.raycluster import keep_workers_in_this_env, secure_local_ray
from cryptopred_core.settings import Settings
from cryptopred_training.features import chronological_split
from cryptopred_training.flow import prepare_data, train_models
from cryptopred_training.settings import TrainSettings
from cryptopred_training.source import indicator_query, read_indicator_frame
from cryptopred_training.synthetic import synthetic_indicator_frame

PAIR = "BTC/USD"


def write_rows(settings: Settings, rows: int) -> None:
    frame = synthetic_indicator_frame(rows, pair=PAIR, ar_lag=15, ar_coef=0.3, seed=7)
    plain = frame.astype(object).where(frame.notna(), None)
    with connect(settings.db_url) as conn:
        create_schema(conn, "postgres")
        upsert(conn, "technical_indicators", plain.to_dict("records"), "postgres")


def ray_data_read_s(db_url: str) -> float:
    keep_workers_in_this_env()
    secure_local_ray(Path(tempfile.mkdtemp(prefix="bench-ray-")))
    import ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        started = time.perf_counter()
        query, params = indicator_query(PAIR, 60, None, None)
        with connect(db_url) as conn:
            text = (
                query.as_string(conn)
                .replace("%s", "{}")
                .format(*(f"'{p}'" if isinstance(p, str) else p for p in params))
            )
        rows = ray.data.read_sql(text, lambda: connect(db_url)).to_pandas()
        assert len(rows) > 0
        return time.perf_counter() - started
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=45_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as folder:
        settings = Settings(
            data_dir=Path(folder),
            postgres_port=free_port(),
            mlflow_port=free_port(),
            ray_port=free_port(),
        )
        postgres, mlflow = Postgres(settings), Mlflow(settings)
        postgres.start()
        mlflow.start()
        try:
            run(settings, args.rows)
        finally:
            mlflow.stop()
            postgres.stop()


def run(settings: Settings, n_rows: int) -> None:
    write_rows(settings, n_rows)
    started = time.perf_counter()
    frame = read_indicator_frame(settings.db_url, PAIR, 60)
    psycopg_s = time.perf_counter() - started
    ray_data_s = ray_data_read_s(settings.db_url)

    env = {
        **os.environ,
        "CRYPTOPRED_DATA_DIR": str(settings.data_dir),
        "CRYPTOPRED_POSTGRES_PORT": str(settings.postgres_port),
        "CRYPTOPRED_MLFLOW_PORT": str(settings.mlflow_port),
        "CRYPTOPRED_RAY_PORT": str(settings.ray_port),
    }
    cli = Path(sys.executable).with_name("cryptopred")
    started = time.perf_counter()
    subprocess.run(
        [str(cli), "train", "--pair", PAIR, "--candle-seconds", "60"], env=env, check=True
    )
    end_to_end_s = time.perf_counter() - started

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    experiment = client.get_experiment_by_name("BTC-USD-60s")
    assert experiment is not None
    latest = client.search_runs([experiment.experiment_id], max_results=1)[0]
    ray_fit_s = latest.data.metrics["ray_fit_seconds"]
    epochs = len(client.get_metric_history(latest.info.run_id, "val_loss"))
    ray_rate = [
        m.value for m in client.get_metric_history(latest.info.run_id, "samples_per_second")
    ]
    threads = int(latest.data.params["cpus_per_worker"])

    config = TrainSettings().train_config(candle_seconds=60)
    config = replace(config, max_epochs=epochs, patience=epochs + 1)
    data = prepare_data(frame, config)
    split = chronological_split(
        data.ends, config.train_fraction, config.validation_fraction, max(data.steps)
    )
    torch.set_num_threads(threads)
    started = time.perf_counter()
    models = train_models(data, split.train, split.validation, config)
    plain_s = time.perf_counter() - started
    plain_rate = [r.samples_per_second for r in models.fit_result.history]

    print(f"rows                         {len(frame):,}")
    print(f"train windows                {len(split.train):,}")
    print(f"epochs                       {epochs}")
    print(f"DB read, psycopg             {psycopg_s:.1f} s")
    print(f"DB read, Ray Data (w/ init)  {ray_data_s:.1f} s")
    print(f"cryptopred train end to end  {end_to_end_s:.1f} s")
    print(f"Ray Train fit                {ray_fit_s:.1f} s")
    print(f"plain torch loop             {plain_s:.1f} s ({threads} threads)")
    print(f"ratio Ray / plain            {ray_fit_s / plain_s:.2f}")
    print(f"samples/s Ray (mean/epoch)   {sum(ray_rate) / len(ray_rate):,.0f}")
    print(f"samples/s plain (mean/epoch) {sum(plain_rate) / len(plain_rate):,.0f}")


if __name__ == "__main__":
    main()
