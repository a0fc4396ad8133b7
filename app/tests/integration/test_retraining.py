"""Scheduled retraining on the embedded stack: the scheduler actor on a real Ray, its runs as
child processes training with Ray Train on real PostgreSQL rows, logged to a real MLflow, while
a candle stage streams trades through a real broker in this process."""

import statistics
import time

import pytest

from cryptopred.stack.parts import Broker
from cryptopred_core import topics
from cryptopred_core.db import connect, upsert
from cryptopred_core.kafka import ensure_topics, make_producer
from cryptopred_core.pipeline.runner import StageRunner
from cryptopred_core.pipeline.writer import DbWriter
from cryptopred_core.ports import free_port
from cryptopred_core.records import encode
from cryptopred_ingest.sources.synthetic import generate
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_ingest.stream.stages import build_stage, group_id
from cryptopred_training.retrain.history import champion_version, last_run
from cryptopred_training.retrain.scheduler import find_scheduler, start_scheduler, stop_scheduler
from cryptopred_training.settings import TrainSettings, model_name
from cryptopred_training.synthetic import synthetic_indicator_frame

pytestmark = pytest.mark.integration

ROWS = 2500
EVERY_S = 100
STREAM_TRADES = 40_000


def write_rows(settings, frame):
    plain = frame.astype(object).where(frame.notna(), None)
    with connect(settings.db_url) as conn:
        upsert(conn, "technical_indicators", plain.to_dict("records"), "postgres")


@pytest.fixture
def stream(postgres, tmp_path):
    """A broker of this test's own with STREAM_TRADES trades in `trades`, and settings for a
    candle stage that reads them."""
    base = postgres.model_copy(
        update={
            "data_dir": tmp_path / "broker",
            "broker_port": free_port(),
            "kafka_bootstrap": None,
        }
    )
    broker = Broker(base)
    broker.start()
    try:
        settings = StreamSettings(**base.model_dump() | {"kafka_bootstrap": broker.address})
        ensure_topics(settings, topics.ALL_TOPICS, 2)
        producer = make_producer(settings, **{"linger.ms": 50})
        count = 0
        for batch in generate(["BTC/USD", "ETH/USD"], days=10, seed=3):
            for trade in batch.trades:
                producer.produce(topics.TRADES, key=trade.pair.encode(), value=encode(trade))
                producer.poll(0)
                count += 1
            if count >= STREAM_TRADES:
                break
        producer.flush(60)
        yield settings
    finally:
        broker.stop()


def candle_rate(settings, prefix):
    """Trades/s of a fresh candle stage over the first STREAM_TRADES trades."""
    stage_settings = settings.model_copy(update={"group_prefix": prefix})
    runner = StageRunner(
        stage_settings,
        build_stage("candles", stage_settings),
        group_id(stage_settings, "candles"),
        writer=DbWriter(stage_settings.db_url, stage_settings.db_dialect),
    )
    try:
        first = None
        while runner.stats.consumed < STREAM_TRADES:
            if runner.step() and first is None:
                first = time.perf_counter()
        return STREAM_TRADES / (time.perf_counter() - first)
    finally:
        runner.close()


def wait_for(what, check, timeout_s, poll_s=0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_two_scheduled_runs_keep_the_champion_and_the_stream(
    postgres, mlflow_server, ray_session, stream, tmp_path, unique
):
    from mlflow import MlflowClient

    pair = f"R{unique[:6].upper()}/USD"
    empty_pair = f"E{unique[:6].upper()}/USD"  # no rows: its runs fail, and are retried
    name, empty_name = model_name(pair, 60), model_name(empty_pair, 60)
    signal = synthetic_indicator_frame(ROWS, pair=pair, ar_lag=15, ar_coef=0.7, seed=1)
    write_rows(postgres, signal)
    settings = TrainSettings(
        **postgres.model_dump()
        | {
            "mlflow_tracking_uri": mlflow_server.mlflow_uri,
            "data_dir": tmp_path,
            "pairs": [pair, empty_pair],
            "candle_seconds": [60],
            "retrain_every": f"{EVERY_S}s",
            "retrain_window": f"{ROWS}m",
            "retrain_poll_s": 1.0,
            "retrain_after_demotion_s": 5.0,
            "retrain_timeout_s": 400.0,
            "train_window_steps": 24,
            "train_batch_size": 64,
            "train_max_epochs": 6,
            "train_walk_forward_folds": 2,
            "train_walk_forward_max_epochs": 0,
            "train_promotion_margin": 0.02,
            "train_seed": 1,
            "train_cpus_per_worker": 1,
        }
    )
    client = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    idle = [candle_rate(stream, f"idle-{unique}-{i}") for i in range(3)]
    start_scheduler(settings)
    try:
        first = wait_for(
            "the first scheduled run",
            lambda: (r := last_run(client, name)) and r.status == "FINISHED" and r,
            timeout_s=300,
        )
        assert (first.trigger, first.decision) == ("schedule", "champion"), first
        # the alias is set just after the run ends
        champion = wait_for("the alias", lambda: champion_version(client, name), timeout_s=30)
        assert champion == last_run(client, name).version
        # newer history that no model can forecast: the next run must not replace the champion
        last_close = float(signal["close"].iloc[-1])
        noise_start_ms = int(signal["window_start_ms"].iloc[-1]) + 60_000
        noise = synthetic_indicator_frame(
            ROWS, pair=pair, start_ms=noise_start_ms, base_price=last_close, seed=2
        )
        write_rows(postgres, noise)

        # the stream's rate while the second run trains
        handle = find_scheduler()

        def running():
            row = _status_row(handle, name)
            return (
                row["running_since_ms"] is not None and row["running_since_ms"] > first.started_ms
            )

        wait_for("the second run to start", running, timeout_s=EVERY_S + 60)
        time.sleep(20)  # past the child's start-up, into the fit
        busy = []
        while running() and len(busy) < 3:
            busy.append(candle_rate(stream, f"busy-{unique}-{len(busy)}"))
        second = wait_for(
            "the second scheduled run",
            lambda: (
                (r := last_run(client, name))
                and r.run_id != first.run_id
                and r.status == "FINISHED"
                and r
            ),
            timeout_s=300,
        )
        failures = wait_for(
            "two failed runs of the model without rows",
            lambda: len(runs := _runs(client, empty_name)) >= 2 and runs,
            timeout_s=EVERY_S + 60,
        )
        assert second.decision == "challenger", second
        # the best forecaster serves: the first champion, or the noise run's baseline when it
        # forecasts the noise better; never the challenger
        baseline = str(client.get_model_version_by_alias(name, "baseline").version)
        assert champion_version(client, name) in (champion, baseline), "a challenger serves"
        assert second.version not in (champion_version(client, name), baseline)
        # a demoted champion (its alias removed) makes its model due soon, not at its slot
        client.delete_registered_model_alias(name, "champion")
        demotion = wait_for(
            "a run after the demotion",
            lambda: (
                (row := _status_row(handle, name))["running_since_ms"]
                and row["next_trigger"] == "demotion"
                and row
            ),
            timeout_s=60,
        )
        assert demotion["demoted_at_ms"] < demotion["running_since_ms"]
        assert demotion["running_since_ms"] < second.started_ms + EVERY_S * 1000
    finally:
        stop_scheduler()  # ends the demotion run: it is logged as failed, with that reason

    print(
        f"\ncandle stage while idle {statistics.median(idle):,.0f} trades/s, while a retraining "
        f"run trains {statistics.median(busy) if busy else float('nan'):,.0f} trades/s "
        f"({len(busy)} measurement(s))"
    )
    assert second.trigger == "schedule"
    assert second.decision == "challenger", second
    assert second.started_ms >= first.started_ms + EVERY_S * 1000
    peaks = [client.get_run(r.run_id).data.metrics["driver_peak_rss_mb"] for r in (first, second)]
    print(f"the runs' driver processes peaked at {peaks[0]:,.0f} and {peaks[1]:,.0f} MiB")
    assert 0 < max(peaks) < settings.retrain_max_rss_mb
    params = [client.get_run(r.run_id).data.params for r in (first, second)]
    assert int(params[0]["until_ms"]) == noise_start_ms
    assert int(params[1]["until_ms"]) == noise_start_ms + ROWS * 60_000
    assert int(params[1]["since_ms"]) == noise_start_ms
    for run in failures[:2]:
        assert run.info.status == "FAILED"
        assert "no final rows" in run.data.tags["failure"]
    assert failures[0].info.start_time - failures[1].info.start_time >= EVERY_S * 1000
    stopped = last_run(client, name)
    assert (stopped.trigger, stopped.status) == ("demotion", "FAILED"), stopped
    assert stopped.reason == "stopped: the scheduler was stopped"
    assert busy, "the second run ended before the stream could be measured"
    assert statistics.median(busy) > 0.3 * statistics.median(idle)


def _status_row(handle, name):
    import ray

    status = ray.get(handle.status.remote(), timeout=10)
    return next(m for m in status["models"] if m["name"] == name)


def _runs(client, name):
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return []
    return client.search_runs(
        [experiment.experiment_id], order_by=["attribute.start_time DESC"], max_results=5
    )
