"""The live source against the fake Kraken and the real broker: a stall that outlives a
reconnect and a stretch of dropped WS trades lose nothing and double nothing; its source
watermarks reach PostgreSQL and are deleted on a graceful stop."""

import threading
import time

import pytest

from cryptopred_core import tables
from cryptopred_core.db import connect, fetch_all
from cryptopred_core.kafka import ensure_topics, make_producer
from cryptopred_core.records import Trade, decode
from cryptopred_ingest.publish import Publisher
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.sources.kraken_live import KrakenLiveSource
from cryptopred_ingest.sources.watermarks import DbWatermarkWriter
from cryptopred_testsupport.fake_kraken import FakeKraken
from cryptopred_testsupport.readback import read_all

pytestmark = pytest.mark.integration

PAIRS = ["BTC/USD", "ETH/EUR"]
TAPE = 300


def watermark_rows(settings):
    with connect(settings.db_url) as conn:
        query = f"SELECT * FROM {tables.SOURCE_WATERMARKS} WHERE source = %s"
        return fetch_all(conn, query, ["kraken-ws"])


def test_stall_across_reconnect_and_dropped_trades_lose_nothing(broker, postgres, unique):
    trades_topic, dlq_topic = f"trades-{unique}", f"dlq-{unique}"
    ensure_topics(broker, [trades_topic, dlq_topic], partitions=2)
    # conn 0 plays 0..120 and goes silent (socket open): the watchdog reconnects while it is
    # silent; conn 1 stays silent 1.5 s after its ack while trades 120..160 happen, then plays
    # 160..300 with 200..230 dropped from the WS (REST has them)
    fake = FakeKraken(
        PAIRS,
        tape_size=TAPE,
        page_size=50,
        rate_limit_every=4,
        base_ts_ns=time.time_ns() - TAPE * 137 * 1_000_000,
        segments=[(0, 120, "silence"), (160, TAPE, "idle", 1.5)],
        ws_drop=(200, 230),
        send_interval_s=0.005,
    ).start()
    settings = IngestSettings(
        **broker.model_dump(exclude={"pairs", "database_url"}),
        database_url=postgres.db_url,
        pairs=PAIRS,
        kraken_ws_url=fake.ws_url,
        kraken_rest_url=fake.rest_url,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        watchdog_s=2.0,
        rest_min_interval_s=0,
        rest_page_size=fake.page_size,
        watermark_interval_s=0.2,
    )
    publisher = Publisher(make_producer(settings), "ingest-live", trades_topic, dlq_topic)
    writer = DbWatermarkWriter(settings.db_url, settings.db_dialect)
    source = KrakenLiveSource(settings, publisher, watermarks=writer)
    thread = threading.Thread(target=source.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and publisher.counts.trades < TAPE * len(PAIRS):
            time.sleep(0.05)
        time.sleep(1.0)  # a few watermark ticks after the last trade
        during = watermark_rows(settings)
    finally:
        source.stop.set()
        thread.join(timeout=15)
        fake.stop()
    assert not thread.is_alive()
    records = read_all(settings, trades_topic, expect=TAPE * len(PAIRS))
    expected = [t.trade_id for t in fake.tape]
    for pair in PAIRS:
        ids = [decode(v, Trade).trade_id for k, v in records if k == pair.encode()]
        assert sorted(ids) == expected, pair  # every trade of the tape
        assert len(ids) == len(set(ids)) == TAPE, pair  # exactly once
    assert fake.connections == 2 and source.stats.id_jumps >= 2
    assert {r["pair"] for r in during} == set(PAIRS)
    assert all(r["through_ms"] <= time.time_ns() // 1_000_000 for r in during)
    assert watermark_rows(settings) == []  # a graceful stop deletes them
