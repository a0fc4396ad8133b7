"""The stages as Ray actors: killed mid-stream, restarted by Ray, and the tables still equal
an uninterrupted run (the pandas and batch TA-Lib references of test_stream_pipeline)."""

import math
import time

import pytest

from cryptopred import topics
from cryptopred.db import connect, fetch_all
from cryptopred.kafka import ensure_topics, make_producer
from cryptopred.records import INDICATOR_COLUMNS, encode
from cryptopred.stack.parts import Broker
from cryptopred.stack.process import free_port
from cryptopred_ingest.stream.actors import (
    actor_name,
    pipeline_status,
    start_pipeline,
    stop_pipeline,
)
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_ingest.testing.streams import (
    batch_indicators,
    closing_trade,
    make_trades,
    reference_candles,
    wait_for,
)

pytestmark = pytest.mark.integration

WIDTHS = [60, 300]


@pytest.fixture
def actor_settings(postgres, tmp_path, ray_session):
    base = postgres.model_copy(
        update={"data_dir": tmp_path, "broker_port": free_port(), "kafka_bootstrap": None}
    )
    part = Broker(base)
    part.start()
    settings = StreamSettings(
        **{
            **base.model_dump(),
            "kafka_bootstrap": part.address,
            "candle_seconds": WIDTHS,
            "group_prefix": "actors",
            "ray_namespace": "cryptopred-test",
            "actor_num_cpus": 0.1,
            "stream_batch_size": 500,
        }
    )
    try:
        yield settings
    finally:
        stop_pipeline(settings, say=lambda _: None)
        part.stop()


def stats(settings, stage):
    for row in pipeline_status(settings):
        if row["actor"] == actor_name(stage, 0) and "consumed" in row:
            return row
    return {"consumed": 0, "pid": None}


def consumed(settings, stage):
    return stats(settings, stage)["consumed"]


def test_killed_stage_actors_restart_and_tables_match_an_uninterrupted_run(
    actor_settings, ray_session
):
    s = actor_settings
    ensure_topics(s, topics.ALL_TOPICS, partitions=2)
    trades = {
        pair: make_trades(pair, seed, 4, price)
        for pair, seed, price in (("KILA/USD", 5, 100.0), ("KILB/USD", 6, 7.5))
    }
    producer = make_producer(s)
    for pair, series in trades.items():
        for t in [*series, closing_trade(series)]:
            producer.produce(topics.TRADES, key=pair.encode(), value=encode(t))
    assert producer.flush(30) == 0
    refs = {(p, w): reference_candles(series, w) for p, series in trades.items() for w in WIDTHS}

    start_pipeline(s)
    ray = ray_session
    for stage in ("candles", "indicators"):
        wait_for(lambda stage=stage: consumed(s, stage) > 500, timeout_s=120, interval_s=0.2)
        before = stats(s, stage)["pid"]
        handle = ray.get_actor(actor_name(stage, 0), namespace=s.ray_namespace)
        ray.kill(handle, no_restart=False)  # Ray restarts it; it resumes from the DB/offsets
        wait_for(
            lambda stage=stage, before=before: stats(s, stage)["pid"] not in (None, before),
            timeout_s=120,
            interval_s=0.5,
        )

    conn = connect(s.db_url, autocommit=True)

    def done():
        for (pair, w), ref in refs.items():
            last = int(ref["window_start_ms"].iloc[-1])
            for table in ("candles", "technical_indicators"):
                n = fetch_all(
                    conn,
                    f"SELECT count(*) AS n FROM {table} WHERE pair = %s AND "
                    "candle_seconds = %s AND window_start_ms <= %s AND final",
                    (pair, w, last),
                )[0]["n"]
                if n != len(ref):
                    return False
        return True

    try:
        wait_for(done, timeout_s=240, interval_s=0.5)
        time.sleep(1)
        statuses = {r["actor"]: r for r in pipeline_status(s)}
        assert all(r.get("running") for r in statuses.values()), statuses
        for (pair, w), ref in refs.items():
            last = int(ref["window_start_ms"].iloc[-1])
            rows = fetch_all(
                conn,
                "SELECT * FROM technical_indicators WHERE pair = %s AND "
                "candle_seconds = %s AND window_start_ms <= %s ORDER BY "
                "window_start_ms",
                (pair, w, last),
            )
            assert [
                (
                    r["window_start_ms"],
                    r["open"],
                    r["high"],
                    r["low"],
                    r["close"],
                    r["volume"],
                    r["vwap"],
                    r["n_trades"],
                )
                for r in rows
            ] == [
                (
                    int(x.window_start_ms),
                    x.open,
                    x.high,
                    x.low,
                    x.close,
                    x.volume,
                    x.vwap,
                    int(x.n_trades),
                )
                for x in ref.itertuples()
            ]
            expected = batch_indicators(ref)
            for column in INDICATOR_COLUMNS:
                for row, value in zip(rows, expected[column], strict=True):
                    if math.isnan(value):
                        assert row[column] is None, (pair, w, column)
                    else:
                        assert row[column] == pytest.approx(value, rel=1e-9, abs=1e-9), column
            n_candles = fetch_all(
                conn,
                "SELECT count(*) AS n FROM candles WHERE pair = %s AND "
                "candle_seconds = %s AND window_start_ms <= %s",
                (pair, w, last),
            )[0]["n"]
            assert n_candles == len(ref)  # one row per window: replays did not duplicate
    finally:
        conn.close()
