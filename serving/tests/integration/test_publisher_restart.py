"""The prediction publisher across restarts: final indicator rows in, predictions once in Kafka
and once in the DB, also when the replica dies between the Kafka acks and the DB commit."""

from collections import Counter

import psycopg
import pytest

from cryptopred.stack.parts import Broker
from cryptopred_core import tables, topics
from cryptopred_core.db import connect, fetch_all, upsert
from cryptopred_core.kafka import ensure_topics, make_producer
from cryptopred_core.pipeline.stage import Emit, Inbound
from cryptopred_core.ports import free_port
from cryptopred_core.records import Prediction, decode, encode
from cryptopred_serving.champion_watch import Champion
from cryptopred_serving.publisher import PublisherStage
from cryptopred_testsupport.serving import (
    read_topic,
    replica_actors,
    rows_of,
    train_and_register,
    wait_for,
)

pytestmark = pytest.mark.integration

PAIR = "RST/USD"
APP = "cryptopred-restart"
HISTORY_ROWS = 300  # in the DB before the app starts (training data)
LIVE_ROWS = 24  # streamed: some before the kill, some in flight, the rest after
HORIZONS = 3


@pytest.fixture(scope="module")
def app(postgres, mlflow_server, ray_session, tmp_path_factory):
    from ray import serve

    from cryptopred_serving.deploy import deploy_app
    from cryptopred_serving.settings import ServeSettings
    from cryptopred_training.synthetic import synthetic_indicator_frame

    frame = synthetic_indicator_frame(HISTORY_ROWS + LIVE_ROWS, pair=PAIR, seed=5)
    rows = rows_of(frame)
    with connect(postgres.db_url) as conn:
        upsert(conn, tables.TECHNICAL_INDICATORS, rows[:HISTORY_ROWS], "postgres")
    train_and_register(mlflow_server.mlflow_uri, frame.iloc[:HISTORY_ROWS], seed=0, pair=PAIR)
    base = postgres.model_copy(
        update={"data_dir": tmp_path_factory.mktemp("rst"), "broker_port": free_port()}
    )
    broker = Broker(base)
    broker.start()
    try:  # a failed deploy must not leave the broker running
        kafka = base.model_copy(update={"kafka_bootstrap": broker.address})
        ensure_topics(kafka, topics.ALL_TOPICS)
        settings = ServeSettings(
            kafka_bootstrap=broker.address,
            database_url=postgres.db_url,
            mlflow_tracking_uri=mlflow_server.mlflow_uri,
            pairs=[PAIR],
            candle_seconds=[60],
            model_poll_s=1.0,
            publisher_group="rst-publisher",
            serve_port=free_port(),
            serve_app_name=APP,
        )
        deploy_app(settings)
        yield {"rows": rows[HISTORY_ROWS:], "kafka": kafka, "db_url": postgres.db_url}
    finally:
        serve.delete(APP)
        serve.shutdown()  # the next module starts Serve on its own port
        broker.stop()


def db_keys(conn, pair):
    rows = fetch_all(
        conn,
        "SELECT window_end_ms, horizon_seconds FROM predictions WHERE pair = %s",
        (pair,),
    )
    return [(r["window_end_ms"], r["horizon_seconds"]) for r in rows]


def writers_waiting_on_predictions(conn):
    return fetch_all(
        conn,
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE %s AND pid <> pg_backend_pid()",
        ('%"predictions"%',),
    )


def test_a_killed_publisher_replica_loses_and_duplicates_nothing(app):
    import ray
    from ray import serve

    rows, kafka = app["rows"], app["kafka"]
    before, after = rows[:8], rows[8:]
    producer = make_producer(kafka)

    def produce(batch):
        for row in batch:
            producer.produce(topics.TECHNICAL_INDICATORS, key=PAIR.encode(), value=encode(row))
        assert producer.flush(30) == 0

    db = connect(app["db_url"], autocommit=True)
    produce(before)
    wait_for(lambda: len(db_keys(db, PAIR)) == len(before) * HORIZONS, 120, "first predictions")

    # hold the publisher's next DB commit: SHARE mode lets it read `predictions`, not write it,
    # so its next cycle ships to Kafka and then waits inside the DB transaction
    lock = connect(app["db_url"])
    lock.execute("LOCK TABLE predictions IN SHARE MODE")
    try:
        produce(after[:4])
        wait_for(lambda: writers_waiting_on_predictions(db), 60, "a publisher write on the lock")
        (victim,) = replica_actors(APP, "PredictionPublisher")
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        wait_for(lambda: victim not in replica_actors(APP, "PredictionPublisher"), 30, "death")
        for waiting in writers_waiting_on_predictions(db):  # the dead replica's transaction
            db.execute("SELECT pg_terminate_backend(%s)", (waiting["pid"],))
    finally:
        lock.rollback()
        lock.close()
    in_flight = len(read_topic(kafka)) - len(before) * HORIZONS
    assert in_flight > 0  # shipped to Kafka ...
    assert len(db_keys(db, PAIR)) == len(before) * HORIZONS  # ... but never committed to the DB

    wait_for(lambda: replica_actors(APP, "PredictionPublisher"), 90, "a new publisher replica")
    produce(after[4:])
    wait_for(lambda: len(db_keys(db, PAIR)) == len(rows) * HORIZONS, 120, "every prediction")

    in_db = db_keys(db, PAIR)
    in_kafka = [(p.pair, p.window_end_ms, p.horizon_seconds) for p in read_topic(kafka)]
    duplicates = [key for key, n in Counter(in_kafka).items() if n > 1]
    assert duplicates == []
    assert len(in_db) == len(set(in_db)) == len(rows) * HORIZONS  # one row per (row, horizon)
    assert {(w, h) for _, w, h in in_kafka} == set(in_db)
    assert {w for w, _ in in_db} == {r.window_end_ms for r in rows}
    publisher = serve.get_deployment_handle("PredictionPublisher", app_name=APP)
    stats = publisher.stats.remote().result(timeout_s=30)
    assert stats["reused_published"] == in_flight  # the restarted replica used the Kafka tail
    db.close()


def fake_predict(champion, window):
    last = window[-1]
    return [
        {
            "horizon_seconds": h,
            "window_end_ms": last["window_end_ms"],
            "target_ts_ms": last["window_end_ms"] + h * 1000,
            "predicted_close": last["close"],
            "predicted_return": 0.0,
            "lower": last["close"] * 0.99,
            "upper": last["close"] * 1.01,
        }
        for h in (60, 300)
    ]


def feed(stage, rows, first_offset):
    out = Emit()
    for i, row in enumerate(rows):
        message = Inbound(topics.TECHNICAL_INDICATORS, 0, first_offset + i, None, encode(row), 0)
        stage.handle(message, 1_800_000_000_000, out)
    return out


def test_a_replay_after_a_restart_publishes_each_prediction_once(postgres):
    """Stage level, no Ray: rows 0-9 committed in the DB, 10-13 shipped to Kafka only (the
    cycle died before its DB commit); the restarted stage replays from row 5 and goes on."""
    from cryptopred_training.synthetic import synthetic_indicator_frame

    pair = "RPL/USD"
    rows = rows_of(synthetic_indicator_frame(40, pair=pair, seed=9))
    history, live = rows[:20], rows[20:]
    champion = Champion(
        name="RPL-USD-60s",
        version="1",
        run_id=None,
        tags={"window_steps": "4", "horizon_seconds": "60,300"},
    )
    conn = connect(postgres.db_url, autocommit=True)
    upsert(conn, tables.TECHNICAL_INDICATORS, history, "postgres")

    def stage(published=None):
        return PublisherStage(
            postgres.db_url,
            {(pair, 60)},
            lambda p, c: champion,
            fake_predict,
            published=published,
        )

    first = stage()
    committed = feed(first, live[:10], 0)
    upsert(conn, tables.PREDICTIONS, committed.rows[tables.PREDICTIONS], "postgres")
    shipped_only = feed(first, live[10:14], 10)
    kafka = [*committed.records, *shipped_only.records]
    tail = list(shipped_only.rows[tables.PREDICTIONS])

    second = stage(published=lambda: tail)
    second.assign([(topics.TECHNICAL_INDICATORS, 0)])
    replay = feed(second, live[5:], 5)
    upsert(conn, tables.PREDICTIONS, replay.rows[tables.PREDICTIONS], "postgres")
    kafka += replay.records

    assert second.skipped_done == 5 and second.reused_published == 4 * 2
    assert len(replay.records) == len(live[14:]) * 2  # only the rows never shipped
    published = [decode(value, Prediction) for _, _, value in kafka]
    keys = [(p.window_end_ms, p.horizon_seconds) for p in published]
    assert len(keys) == len(set(keys)) == len(live) * 2
    assert sorted(db_keys(conn, pair)) == sorted(
        (r.window_end_ms, h) for r in live for h in (60, 300)
    )
    first.close()
    second.close()
    conn.close()


def test_the_stage_keeps_one_db_session_and_reconnects_after_losing_it(postgres):
    """Stage level, no Ray: the reads of every row share one session; when PostgreSQL ends it,
    that row fails (the runner's cycle then fails and replays) and the next one reconnects."""
    from cryptopred_training.synthetic import synthetic_indicator_frame

    pair = "SES/USD"
    rows = rows_of(synthetic_indicator_frame(30, pair=pair, seed=4))
    admin = connect(postgres.db_url, autocommit=True)
    upsert(admin, tables.TECHNICAL_INDICATORS, rows[:20], "postgres")
    champion = Champion("SES-USD-60s", "1", None, {"window_steps": "4", "horizon_seconds": "60"})
    stage = PublisherStage(postgres.db_url, {(pair, 60)}, lambda p, c: champion, fake_predict)

    def sessions():
        return {r["pid"] for r in fetch_all(admin, "SELECT pid FROM pg_stat_activity")}

    def session_of_stage():
        return stage._conn.info.backend_pid if stage._conn is not None else None

    feed(stage, rows[20:21], 0)
    first_session = session_of_stage()
    out = feed(stage, rows[21:24], 1)
    assert len(out.rows[tables.PREDICTIONS]) == 3 * 2  # fake_predict: two horizons a row
    assert session_of_stage() == first_session  # one session for every row's reads
    fetch_all(admin, "SELECT pg_terminate_backend(%s) AS done", (first_session,))
    with pytest.raises(psycopg.OperationalError):
        feed(stage, rows[24:25], 4)
    assert session_of_stage() is None  # dropped with the error
    out = feed(stage, rows[25:27], 5)
    assert len(out.rows[tables.PREDICTIONS]) == 2 * 2
    second_session = session_of_stage()
    assert second_session not in (None, first_session) and second_session in sessions()
    stage.close()
    wait_for(lambda: second_session not in sessions(), 10, "the stage's session to end")
    admin.close()
