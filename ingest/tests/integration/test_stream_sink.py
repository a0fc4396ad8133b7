"""The sink stage on the real broker and PostgreSQL: idempotent rows, DLQ, commit after DB."""

import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from cryptopred.stack.parts import Postgres
from cryptopred_core import topics
from cryptopred_core.db import connect, fetch_all
from cryptopred_core.kafka import ensure_topics, make_producer
from cryptopred_core.pipeline.runner import StageRunner
from cryptopred_core.pipeline.writer import DbWriter
from cryptopred_core.ports import free_port
from cryptopred_core.records import Candle, DeadLetter, decode, encode
from cryptopred_core.settings import Settings
from cryptopred_ingest.stream.sink import SinkStage
from cryptopred_testsupport.readback import read_until_quiet

pytestmark = pytest.mark.integration

START_MS = 1_700_000_040_000


def candle(i, pair, close=100.0, final=True):
    return Candle(
        pair=pair,
        candle_seconds=60,
        window_start_ms=START_MS + i * 60_000,
        window_end_ms=START_MS + (i + 1) * 60_000,
        open=100.0,
        high=max(100.0, close),
        low=min(100.0, close),
        close=close,
        volume=1.0,
        vwap=100.0,
        n_trades=2,
        final=final,
    )


def committed(settings, group, topic):
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    got = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
    consumer.close()
    return {tp.partition: tp.offset for tp in got}


def run_until(runner, predicate, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runner.step()
        if predicate():
            return
    raise AssertionError("condition not reached in time")


@pytest.fixture
def stream_settings(broker, postgres):
    return broker.model_copy(update={"database_url": postgres.db_url})


def test_sink_writes_each_row_once_and_sends_poison_to_dlq(stream_settings, unique):
    s = stream_settings
    topic = f"candles-{unique}"
    ensure_topics(s, [topic, topics.DLQ], partitions=2)
    pair = f"S{unique[:4].upper()}/USD"
    producer = make_producer(s)
    sent = [candle(i, pair, close=100.0 + i) for i in range(40)]
    for c in sent + sent[:10]:  # ten replayed duplicates
        producer.produce(topic, key=pair.encode(), value=encode(c))
    poison = [
        b"{not json",
        encode(candle(0, pair)).replace(b'"close":100.0', b'"close":-1.0'),
        b'{"pair":"BTC/USD"}',
    ]
    for raw in poison:
        producer.produce(topic, key=pair.encode(), value=raw)
    assert producer.flush(30) == 0

    runner = StageRunner(
        s,
        SinkStage({topic: (Candle, "candles")}),
        f"sink-{unique}",
        writer=DbWriter(s.db_url, "postgres"),
    )
    try:
        run_until(runner, lambda: runner.stats.consumed >= len(sent) + 10 + len(poison))
    finally:
        runner.close()

    with connect(s.db_url) as conn:
        rows = fetch_all(
            conn,
            "SELECT window_start_ms, close FROM candles WHERE pair = %s ORDER BY window_start_ms",
            (pair,),
        )
    assert [(r["window_start_ms"], r["close"]) for r in rows] == [
        (c.window_start_ms, c.close) for c in sent
    ]
    dead = [decode(m.value(), DeadLetter) for m in read_until_quiet(s, topics.DLQ)]
    mine = [d for d in dead if d.stage == "sink" and d.raw in {p.decode() for p in poison}]
    assert len(mine) == 3
    assert all(d.reason.startswith(topic + ": ") for d in mine)
    assert any("close" in d.reason for d in mine)
    assert any("malformed JSON" in d.reason for d in mine)
    # everything handled is committed
    offsets = committed(s, f"sink-{unique}", topic)
    assert sum(o for o in offsets.values() if o >= 0) == len(sent) + 10 + len(poison)


def test_a_db_outage_is_retried_and_offsets_wait_for_the_db(broker, unique, tmp_path):
    db_settings = Settings(data_dir=tmp_path, postgres_port=free_port())
    pg = Postgres(db_settings)
    pg.start()
    try:
        from cryptopred_core.db import create_schema

        with connect(pg.address) as conn:
            create_schema(conn, "postgres")
        pg.stop()  # the DB goes away before the sink starts

        s = broker.model_copy(update={"database_url": pg.address})
        topic = f"candles-{unique}"
        ensure_topics(s, [topic], partitions=1)
        producer = make_producer(s)
        sent = [candle(i, "ETH/USD", close=200.0 + i) for i in range(25)]
        for c in sent:
            producer.produce(topic, key=b"ETH/USD", value=encode(c))
        assert producer.flush(30) == 0

        stop = threading.Event()
        writer = DbWriter(pg.address, "postgres", retry_initial_s=0.2, retry_max_s=120, stop=stop)
        runner = StageRunner(
            s, SinkStage({topic: (Candle, "candles")}), f"sink-{unique}", writer=writer
        )
        worker = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        worker.start()
        deadline = time.monotonic() + 30
        while writer.retries < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert writer.retries >= 3  # it is retrying, not dropping
        assert committed(s, f"sink-{unique}", topic) == {0: -1001}  # nothing committed yet

        pg.start()  # the DB comes back
        deadline = time.monotonic() + 30
        while runner.stats.rows < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        worker.join(30)
        with connect(pg.address) as conn:
            n = fetch_all(conn, "SELECT count(*) AS n FROM candles WHERE pair = 'ETH/USD'")[0]["n"]
        assert n == len(sent)
        assert committed(s, f"sink-{unique}", topic) == {0: len(sent)}
    finally:
        pg.stop()
