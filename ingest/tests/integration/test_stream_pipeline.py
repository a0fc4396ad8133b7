"""Trades → candles → indicators → DB through the real broker and PostgreSQL (no Ray here)."""

import pytest

from cryptopred.stack.parts import Broker
from cryptopred_core import topics
from cryptopred_core.db import connect, fetch_all
from cryptopred_core.kafka import ensure_topics, make_producer
from cryptopred_core.pipeline.runner import StageRunner
from cryptopred_core.pipeline.writer import DbWriter
from cryptopred_core.ports import free_port
from cryptopred_core.records import DeadLetter, Trade, decode, encode
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_ingest.stream.stages import build_stage, group_id
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

WIDTHS = [60, 300, 3600]


@pytest.fixture(scope="module")
def private_broker(postgres, tmp_path_factory):
    """A broker of this module's own, so the fixed topic names hold only these trades."""
    settings = postgres.model_copy(
        update={
            "data_dir": tmp_path_factory.mktemp("broker"),
            "broker_port": free_port(),
            "kafka_bootstrap": None,
        }
    )
    part = Broker(settings)
    part.start()
    try:
        yield settings.model_copy(update={"kafka_bootstrap": part.address})
    finally:
        part.stop()


def stream_settings(base, prefix):
    return StreamSettings(
        **{
            **base.model_dump(),
            "candle_seconds": WIDTHS,
            "grace_ms": 5000,
            "group_prefix": prefix,
            "open_emit_interval_ms": 1000,
        }
    )


def runners(settings):
    out = {}
    for stage in ("candles", "indicators", "sink"):
        out[stage] = StageRunner(
            settings,
            build_stage(stage, settings),
            group_id(settings, stage),
            writer=DbWriter(settings.db_url, settings.db_dialect),
        )
    return out


def db_candles(conn, pair, width):
    return fetch_all(
        conn,
        "SELECT * FROM candles WHERE pair = %s AND candle_seconds = %s ORDER BY window_start_ms",
        (pair, width),
    )


def test_candles_and_indicators_equal_pandas_and_batch_talib(private_broker):
    s = stream_settings(private_broker, "pipe")
    ensure_topics(s, topics.ALL_TOPICS, partitions=2)
    trades = {
        pair: make_trades(pair, seed, 6, price)
        for pair, seed, price in (("PIPA/USD", 1, 30_000.0), ("PIPB/EUR", 2, 2_000.0))
    }
    late = Trade(
        pair="PIPA/USD",
        price=1.0,
        qty=1.0,
        side="buy",
        trade_id=10**9,
        ts_ms=trades["PIPA/USD"][0].ts_ms,
        source="test",
    )
    producer = make_producer(s)
    for pair, series in trades.items():
        for t in [*series, closing_trade(series)]:
            producer.produce(topics.TRADES, key=pair.encode(), value=encode(t))
    producer.produce(topics.TRADES, key=b"PIPA/USD", value=encode(late))
    producer.produce(topics.TRADES, key=b"PIPA/USD", value=b'{"pair":"PIPA/USD","price":-1}')
    assert producer.flush(30) == 0

    refs = {
        (pair, w): reference_candles(series, w) for pair, series in trades.items() for w in WIDTHS
    }
    stages = runners(s)
    conn = connect(s.db_url, autocommit=True)

    try:
        wait_for(
            lambda: all_final(conn, refs),
            timeout_s=180,
            step=lambda: [r.step() for r in stages.values()],
        )
        for (pair, w), ref in refs.items():
            rows = [
                r
                for r in db_candles(conn, pair, w)
                if r["window_start_ms"] <= ref["window_start_ms"].iloc[-1]
            ]
            assert all(r["final"] for r in rows)
            got = candle_tuples(rows)
            want = reference_tuples(ref)
            assert got == want, (pair, w)

            ind = indicator_rows(conn, pair, w, ref)
            assert [r["window_start_ms"] for r in ind] == list(ref["window_start_ms"])
            assert indicator_mismatches(ind, ref) == [], (pair, w)
        dead = [decode(m.value(), DeadLetter) for m in read_until_quiet(s, topics.DLQ)]
        assert [d.raw for d in dead if d.reason == "late"] == [encode(late).decode()]
        poison = [d for d in dead if d.stage == "candles" and d.reason != "late"]
        assert len(poison) == 1 and "price" in poison[0].reason
    finally:
        conn.close()
        for r in stages.values():
            r.close()
