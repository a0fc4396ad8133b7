"""The offline demo end to end at reduced size: 1 day of one synthetic pair through the real
broker, stage actors, PostgreSQL, Ray Train, MLflow and Ray Serve, up to a prediction served over
HTTP that is also in Kafka `predictions` and the DB."""

import signal
import time

import pytest

from cryptopred.demo.flow import Demo, http_json, pair_url
from cryptopred.demo.settings import DemoSettings
from cryptopred.stack.parts import Broker
from cryptopred_core import topics
from cryptopred_core.db import connect, fetch_all
from cryptopred_core.ports import free_port
from cryptopred_core.records import Prediction, decode
from cryptopred_testsupport.readback import read_until_quiet

pytestmark = pytest.mark.integration


@pytest.fixture
def demo_run(postgres, mlflow_server, ray_session, tmp_path, unique):
    from ray import serve

    base = postgres.model_copy(
        update={
            "data_dir": tmp_path,
            "broker_port": free_port(),
            "kafka_bootstrap": None,
            "mlflow_tracking_uri": mlflow_server.mlflow_uri,
        }
    )
    broker = Broker(base)
    broker.start()
    pair = f"D{unique[:5].upper()}/USD"
    settings = DemoSettings(
        **base.model_dump()
        | {
            "kafka_bootstrap": broker.address,
            "demo_source": "synthetic",
            "demo_pairs": [pair],
            "demo_history_days": 1.0,
            "demo_momentum": 0.6,
            "demo_seed": 3,
            "demo_history_timeout_s": 300.0,
        }
    )
    overrides = {
        "stream": {
            "ray_namespace": f"demo-{unique}",
            "group_prefix": f"demo-{unique}",
            "actor_num_cpus": 0.1,
        },
        "train": {
            "train_window_steps": 24,
            "train_batch_size": 64,
            "train_max_epochs": 4,
            "train_walk_forward_folds": 1,
            "train_walk_forward_max_epochs": 0,
            "train_cpus_per_worker": 1,
            "train_storage_dir": tmp_path / "ray_results",
        },
        "serve": {
            "serve_port": free_port(),
            "serve_app_name": f"demo-{unique}",
            "publisher_group": f"demo-publisher-{unique}",
            "model_poll_s": 1.0,
            "latest_cache_ms": 0,
        },
    }
    lines: list[str] = []
    serve.shutdown()  # Serve binds its proxy once: start it on this test's port
    demo = Demo(settings, lines.append, overrides)
    try:
        yield demo, pair, lines
    finally:
        demo.stop()
        serve.shutdown()
        broker.stop()


def test_offline_demo_serves_predictions_over_http_kafka_and_db(demo_run):
    demo, pair, lines = demo_run
    import ray

    joined: list[bool] = []  # the demo re-installs its SIGTERM handler here, after ray.init
    ctrl_c = signal.getsignal(signal.SIGINT)
    demo.run_to_live(connected=lambda: joined.append(ray.is_initialized()))
    assert joined == [True]
    # Ray Train's own SIGINT handler did not outlive the training: Ctrl-C still stops the demo
    assert signal.getsignal(signal.SIGINT) is ctrl_c
    outcome = [line for line in lines if line.startswith(f"{pair}: ")]
    assert demo.decisions[pair].startswith("champion"), outcome

    status, latest = http_json(f"{demo.base_url}/v1/predictions/{pair_url(pair)}")
    assert status == 200, latest
    assert latest["pair"] == pair and latest["model_name"] == pair.replace("/", "-") + "-60s"
    assert latest["lower"] <= latest["predicted_close"] <= latest["upper"]

    # live: the generator keeps trading on wall time, so candles after the history get forecasts
    deadline = time.monotonic() + 180
    while True:
        with connect(demo.stream.db_url) as conn:
            rows = fetch_all(
                conn,
                "SELECT window_end_ms, horizon_seconds, model_version FROM predictions "
                "WHERE pair = %s ORDER BY window_end_ms",
                (pair,),
            )
        if rows and rows[-1]["window_end_ms"] > demo.history_end_ms:
            break
        assert time.monotonic() < deadline, f"no prediction of a live candle: {rows[-3:]}"
        time.sleep(2)

    kafka = [
        decode(m.value(), Prediction)
        for m in read_until_quiet(demo.stream, topics.PREDICTIONS)
        if m.key() == pair.encode()
    ]
    in_kafka = {(p.window_end_ms, p.horizon_seconds) for p in kafka}
    in_db = {(r["window_end_ms"], r["horizon_seconds"]) for r in rows}
    assert in_db and in_db <= in_kafka  # every DB row was published (Kafka may be ahead)
    assert (latest["window_end_ms"], latest["horizon_seconds"]) in in_kafka
    horizons = {r["horizon_seconds"] for r in rows}
    assert horizons == {60, 300, 900}

    # the demo retrains on a schedule: 6 h after the run it trained at start
    from cryptopred_training.retrain.scheduler import find_scheduler

    handle = find_scheduler()
    assert handle is not None, "the demo did not start the retraining scheduler"
    deadline = time.monotonic() + 60
    while True:
        status = ray.get(handle.status.remote(), timeout=10)
        row = next(m for m in status["models"] if m["pair"] == pair)
        if row["last"] is not None and row["next_due_ms"] is not None:
            break
        assert time.monotonic() < deadline, f"the scheduler never saw the first run: {row}"
        time.sleep(1)
    # the run's decision as the gate made it (a baseline may serve when the transformer loses)
    assert row["last"]["decision"] == demo.gate_decisions[pair], (row, demo.gate_decisions)
    assert row["last"]["trigger"] == "manual"
    assert row["next_due_ms"] - row["last"]["started_ms"] == 6 * 3_600_000
    assert row["next_trigger"] == "schedule" and row["running_since_ms"] is None

    status, models = http_json(f"{demo.base_url}/v1/models")
    assert status == 200 and models[0]["pair"] == pair and models[0]["version"] is not None
    assert set(demo.urls()) >= {"API", "API docs", "chart", "Ray dashboard", "MLflow UI"}
