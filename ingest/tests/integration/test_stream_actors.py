"""The stages as Ray actors: killed mid-stream, restarted by Ray, and the tables still equal
an uninterrupted run (the pandas and batch TA-Lib references of test_stream_pipeline)."""

import time

import pytest

from cryptopred.stack.parts import Broker
from cryptopred_core import topics
from cryptopred_core.db import connect, fetch_all
from cryptopred_core.kafka import ensure_topics, make_producer
from cryptopred_core.ports import free_port
from cryptopred_core.records import DeadLetter, decode, encode
from cryptopred_ingest.stream.actors import (
    actor_name,
    pipeline_status,
    start_pipeline,
    stop_pipeline,
)
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_testsupport.readback import read_until_quiet
from cryptopred_testsupport.streams import (
    all_final,
    candle_tuples,
    closing_trade,
    indicator_mismatches,
    indicator_rows,
    make_trades,
    reference_candles,
    reference_tuples,
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
        assert stats(s, stage)["restarts"] >= 1  # a kill counts as a restart too

    conn = connect(s.db_url, autocommit=True)

    try:
        wait_for(lambda: all_final(conn, refs), timeout_s=240, interval_s=0.5)
        time.sleep(1)
        statuses = {r["actor"]: r for r in pipeline_status(s)}
        assert all(r.get("running") for r in statuses.values()), statuses
        for (pair, w), ref in refs.items():
            last = int(ref["window_start_ms"].iloc[-1])
            rows = indicator_rows(conn, pair, w, ref)
            assert candle_tuples(rows) == reference_tuples(ref)
            assert indicator_mismatches(rows, ref) == [], (pair, w)
            n_candles = fetch_all(
                conn,
                "SELECT count(*) AS n FROM candles WHERE pair = %s AND "
                "candle_seconds = %s AND window_start_ms <= %s",
                (pair, w, last),
            )[0]["n"]
            assert n_candles == len(ref)  # one row per window: replays did not duplicate
    finally:
        conn.close()


def test_a_stage_that_raises_ends_its_process_and_ray_restarts_it(actor_settings, ray_session):
    """The fault hook raises inside the running candle stage; the actor's process exits, Ray
    starts a new one (after the crash-loop backoff) and `status` shows the restart and the
    error. A ~2 MB garbage trade on the way becomes a dead letter the broker accepts."""
    s = actor_settings.model_copy(update={"fault_hooks": True, "crash_backoff_max_s": 2.0})
    ensure_topics(s, topics.ALL_TOPICS, partitions=2)
    series = make_trades("FLT/USD", 9, 0.5, 50.0)
    garbage = b"\xff{" * 1_000_000
    producer = make_producer(s, **{"message.max.bytes": 4_000_000})
    for t in series:
        producer.produce(topics.TRADES, key=b"FLT/USD", value=encode(t))
    producer.produce(topics.TRADES, key=b"FLT/USD", value=garbage)
    assert producer.flush(30) == 0

    start_pipeline(s)
    ray = ray_session
    wait_for(lambda: stats(s, "candles").get("state") == "running", timeout_s=120, interval_s=0.2)
    before = stats(s, "candles")
    assert before["restarts"] == 0 and before["last_error"] is None
    handle = ray.get_actor(actor_name("candles", 0), namespace=s.ray_namespace)
    ray.get(handle.inject_fault.remote("injected by the test"), timeout=30)

    wait_for(
        lambda: (
            stats(s, "candles")["pid"] not in (None, before["pid"])
            and stats(s, "candles").get("state") == "running"
        ),
        timeout_s=120,
        interval_s=0.5,
    )
    after = stats(s, "candles")
    assert after["restarts"] >= 1
    assert after["last_error"] == "InjectedFaultError: injected by the test"
    assert after["running"] is True

    def garbage_letters() -> list[DeadLetter]:
        letters = [decode(m.value(), DeadLetter) for m in read_until_quiet(s, topics.DLQ, 2.0)]
        return [d for d in letters if d.stage == "candles" and d.raw_bytes == len(garbage)]

    wait_for(lambda: len(garbage_letters()) >= 1, timeout_s=120, interval_s=1.0)
    assert all(len(d.raw) <= 4096 for d in garbage_letters())

    # a non-operational DB error (the sink's table renamed away) is not retried: the sink
    # fails and restarts until the table is back, then stores every candle, none lost
    series2 = make_trades("FLT/EUR", 10, 0.5, 20.0)
    refs2 = {("FLT/EUR", w): reference_candles(series2, w) for w in WIDTHS}
    sink_before = stats(s, "sink")
    conn = connect(s.db_url, autocommit=True)
    try:
        conn.execute("ALTER TABLE candles RENAME TO candles_away")
        try:
            for t in [*series2, closing_trade(series2)]:
                producer.produce(topics.TRADES, key=b"FLT/EUR", value=encode(t))
            assert producer.flush(30) == 0
            wait_for(
                lambda: "UndefinedTable" in str(stats(s, "sink").get("last_error")),
                timeout_s=120,
                interval_s=0.5,
            )
            assert stats(s, "sink")["restarts"] > sink_before["restarts"]
        finally:
            conn.execute("ALTER TABLE candles_away RENAME TO candles")
        wait_for(lambda: all_final(conn, refs2), timeout_s=180, interval_s=0.5)
        for (pair, w), ref in refs2.items():
            rows = fetch_all(
                conn,
                "SELECT * FROM candles WHERE pair = %s AND candle_seconds = %s "
                "AND window_start_ms <= %s ORDER BY window_start_ms",
                (pair, w, int(ref["window_start_ms"].iloc[-1])),
            )
            assert candle_tuples(rows) == reference_tuples(ref), (pair, w)
    finally:
        conn.close()
    assert all(r.get("running") for r in pipeline_status(s))
