"""Against the real Kraken (deselected by default; run with `-m live`)."""

import threading
import time

import pytest

from cryptopred_core.kafka import ensure_topics, make_producer
from cryptopred_core.records import Trade, decode
from cryptopred_ingest.publish import Publisher
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.sources.kraken_live import KrakenLiveSource
from cryptopred_ingest.sources.kraken_rest import TradesClient
from cryptopred_testsupport.readback import read_all

pytestmark = pytest.mark.live


def test_real_kraken_ws_gives_trades_and_heartbeats(broker):
    settings = IngestSettings(
        pairs=["BTC/USD", "ETH/USD"], kraken_snapshot=True, kafka_bootstrap=broker.kafka_bootstrap
    )
    ensure_topics(settings, ["trades", "dlq"])
    source = KrakenLiveSource(settings, Publisher(make_producer(settings), "ingest-live"))
    thread = threading.Thread(target=source.run, daemon=True)
    thread.start()
    time.sleep(30)
    source.stop.set()
    thread.join(timeout=10)
    trades = [decode(v, Trade) for _, v in read_all(settings, "trades")]
    assert trades and source.stats.heartbeats > 0


def test_real_kraken_rest_trades_page():
    page = TradesClient().page("BTC/USD", time.time_ns() - 3600 * 10**9)
    assert page.trades and page.last_ns > 0 and not page.rejects
