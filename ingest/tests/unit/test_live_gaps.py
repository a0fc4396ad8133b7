"""Gap repair by trade id, silence repair, and source watermarks of the live Kraken source."""

import threading
import time

import pytest

from cryptopred_core.records import Trade, decode
from cryptopred_ingest.publish import DeliveryError, Publisher
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.sources.kraken_live import KrakenLiveSource
from cryptopred_ingest.sources.watermarks import Completeness
from cryptopred_testsupport.fake_kraken import FakeKraken
from cryptopred_testsupport.memory import MemoryProducer

PAIRS = ["BTC/USD", "ETH/EUR"]


def settings_for(fake, **kw):
    values = {
        "pairs": PAIRS,
        "kraken_ws_url": fake.ws_url,
        "kraken_rest_url": fake.rest_url,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        "watchdog_s": 5.0,
        "rest_min_interval_s": 0,
        "rest_page_size": fake.page_size,
        "watermark_interval_s": 0.05,
    }
    return IngestSettings(**(values | kw))


class FakeWriter:
    def __init__(self):
        self.rows = []
        self.deleted = []

    def write(self, rows):
        self.rows.extend(rows)
        return True

    def delete(self, source):
        self.deleted.append(source)

    def through(self, pair):
        return max((r.through_ms for r in self.rows if r.pair == pair), default=None)


def published_ids(producer):
    out = {p: [] for p in PAIRS}
    for key, value in producer.topic("trades"):
        out[key.decode()].append(decode(value, Trade).trade_id)
    return out


def run_until(source, done, timeout_s=20.0):
    thread = threading.Thread(target=source.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not done():
        time.sleep(0.02)
    return thread


def finish(source, thread):
    source.stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_id_jump_repairs_exactly_the_missing_ids_before_the_revealing_trade():
    fake = FakeKraken(PAIRS, tape_size=100, page_size=10, ws_drop=(40, 55), rate_limit_every=0)
    fake.start()
    producer = MemoryProducer()
    try:
        source = KrakenLiveSource(settings_for(fake), Publisher(producer, "x"))
        thread = run_until(
            source, lambda: all(len(v) >= 100 for v in published_ids(producer).values())
        )
        finish(source, thread)
    finally:
        fake.stop()
    expected = [t.trade_id for t in fake.tape]
    for pair, ids in published_ids(producer).items():
        assert ids == expected, pair  # all, once, and the repaired ones in their place
    assert source.stats.connects == 1 and source.stats.id_jumps == 2
    assert source.stats.gaps_repaired == 2 * 15


def test_stall_across_a_reconnect_then_silent_after_the_ack_loses_nothing():
    # conn 0 plays 0..50 then goes silent; the watchdog reconnects while it is silent; conn 1
    # stays silent 1 s after its ack (trades 50..80 happen meanwhile), then plays from 80
    fake = FakeKraken(
        PAIRS,
        tape_size=150,
        page_size=10,
        rate_limit_every=0,
        segments=[(0, 50, "silence"), (80, 150, "idle", 1.0)],
    ).start()
    producer = MemoryProducer()
    try:
        source = KrakenLiveSource(settings_for(fake, watchdog_s=0.8), Publisher(producer, "x"))
        thread = run_until(
            source, lambda: all(len(v) >= 150 for v in published_ids(producer).values())
        )
        finish(source, thread)
    finally:
        fake.stop()
    expected = [t.trade_id for t in fake.tape]
    for pair, ids in published_ids(producer).items():
        assert sorted(ids) == expected and len(ids) == len(set(ids)), pair
    assert fake.connections == 2


def test_completeness_moves_only_with_a_continuous_repaired_feed():
    state = Completeness(silence_ms=2000)
    state.connected()
    state.message(1_000)  # before the catch-up repair: does not count
    assert state.known_ms is None
    state.repaired(1_500)
    assert state.known_ms == 1_500
    state.message(2_000)
    assert state.known_ms == 2_000
    assert not state.needs_repair(3_900)
    assert state.needs_repair(4_100)  # a silence: repair before trusting the feed again
    state.connected()  # a reconnect: stays put until repaired
    state.message(9_000)
    assert state.known_ms == 2_000 and not state.needs_repair(9_000)
    state.repaired(8_000)
    assert state.known_ms == 8_000


def test_watermarks_written_only_after_a_successful_flush():
    class FailingProducer(MemoryProducer):
        def produce(self, topic, value=None, key=None, *, on_delivery=None):
            super().produce(topic, value, key)
            on_delivery("Local: Message timed out", None)

    writer = FakeWriter()
    settings = IngestSettings(pairs=PAIRS, watermark_lag_ms=500)
    source = KrakenLiveSource(settings, Publisher(MemoryProducer(), "x"), watermarks=writer)
    source.completeness.repaired(10_000)
    source.flush_watermarks()
    assert {(r.pair, r.through_ms, r.source) for r in writer.rows} == {
        (p, 9_500, "kraken-ws") for p in PAIRS
    }
    source.flush_watermarks()  # nothing new: nothing written
    assert len(writer.rows) == 2
    source.publisher = Publisher(FailingProducer(), "x")
    source.publisher.reject("r", "raw")
    source.completeness.message(12_000)
    with pytest.raises(DeliveryError):
        source.flush_watermarks()
    assert writer.through("BTC/USD") == 9_500


def test_watermarks_hold_while_the_feed_is_silent_and_are_deleted_on_stop():
    fake = FakeKraken(
        PAIRS, tape_size=60, page_size=10, rate_limit_every=0, segments=[(0, 60, "silence")]
    ).start()
    producer, writer = MemoryProducer(), FakeWriter()
    try:
        source = KrakenLiveSource(
            settings_for(fake, watermark_lag_ms=0), Publisher(producer, "x"), watermarks=writer
        )
        thread = run_until(source, lambda: len(producer.topic("trades")) >= 120)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and writer.through("BTC/USD") is None:
            time.sleep(0.02)
        held = writer.through("BTC/USD")
        assert held is not None and held <= time.time_ns() // 1_000_000
        time.sleep(1.0)
        assert writer.through("BTC/USD") == held  # silent: no promise past the last message
        finish(source, thread)
    finally:
        fake.stop()
    assert writer.deleted == ["kraken-ws"]
    assert {r.pair for r in writer.rows} == set(PAIRS)


def test_a_delivery_error_ends_the_source_instead_of_reconnecting():
    class ExpiringProducer(MemoryProducer):
        def produce(self, topic, value=None, key=None, *, on_delivery=None):
            super().produce(topic, value, key)
            on_delivery("Local: Message timed out", None)

    fake = FakeKraken(PAIRS, tape_size=40, rate_limit_every=0).start()
    try:
        source = KrakenLiveSource(
            settings_for(fake, live_checkpoint_s=0.1), Publisher(ExpiringProducer(), "x")
        )
        with pytest.raises(DeliveryError, match="records not delivered"):
            source.run()
    finally:
        fake.stop()
    assert source.stats.connects == 1


def test_a_failing_repair_reconnects_and_repairs_again():
    fake = FakeKraken(
        PAIRS,
        tape_size=80,
        page_size=10,
        rate_limit_every=0,
        segments=[(0, 20, "close"), (40, 80, "idle")],
    ).start()
    producer = MemoryProducer()
    unavailable = {"left": 2}
    original = fake.rest_trades

    def flaky(query):
        if unavailable["left"]:
            unavailable["left"] -= 1
            return 200, {"error": ["EService:Unavailable"]}
        return original(query)

    fake.rest_trades = flaky
    try:
        source = KrakenLiveSource(settings_for(fake, rest_max_retries=0), Publisher(producer, "x"))
        thread = run_until(
            source, lambda: all(len(v) >= 80 for v in published_ids(producer).values())
        )
        finish(source, thread)
    finally:
        fake.stop()
    for pair, ids in published_ids(producer).items():
        assert sorted(ids) == [t.trade_id for t in fake.tape], pair


def test_db_watermark_writer_survives_a_db_outage():
    import psycopg

    from cryptopred_core.db.rows import SourceWatermark
    from cryptopred_ingest.sources.watermarks import DbWatermarkWriter

    def down(url):
        raise psycopg.OperationalError("connection refused")

    writer = DbWatermarkWriter("postgresql://nowhere/db", "postgres", connect_db=down)
    row = SourceWatermark(source="kraken-ws", pair="BTC/USD", through_ms=1, updated_ms=2)
    assert writer.write([row]) is False
    writer.delete("kraken-ws")  # logged, not raised


def test_a_message_after_a_silence_first_repairs_every_pair():
    # conn 1 stays silent 1 s after its ack (trades 20..40 happen meanwhile): the first
    # message after it has every pair repaired before it is handled, on a cold start too
    fake = FakeKraken(
        PAIRS,
        tape_size=100,
        page_size=10,
        rate_limit_every=0,
        base_ts_ns=time.time_ns(),
        segments=[(0, 20, "close"), (40, 100, "idle", 1.0)],
    ).start()
    producer = MemoryProducer()
    try:
        source = KrakenLiveSource(
            settings_for(fake, silence_repair_s=0.5), Publisher(producer, "x")
        )
        thread = run_until(
            source, lambda: all(len(v) >= 100 for v in published_ids(producer).values())
        )
        finish(source, thread)
    finally:
        fake.stop()
    for pair, ids in published_ids(producer).items():
        assert ids == [t.trade_id for t in fake.tape], pair
    assert source.stats.silence_repairs == 1 and source.stats.id_jumps == 0


def test_a_stall_on_the_first_connection_of_a_cold_start_is_repaired_after_it():
    fake = FakeKraken(
        PAIRS, tape_size=80, page_size=10, rate_limit_every=0, ws_drop=(20, 40), ws_pause_s=1.0
    ).start()
    producer = MemoryProducer()
    try:
        source = KrakenLiveSource(
            settings_for(fake, silence_repair_s=0.5), Publisher(producer, "x")
        )
        thread = run_until(
            source, lambda: all(len(v) >= 80 for v in published_ids(producer).values())
        )
        finish(source, thread)
    finally:
        fake.stop()
    for pair, ids in published_ids(producer).items():
        assert ids == [t.trade_id for t in fake.tape], pair
    assert source.stats.connects == 1
    assert source.stats.silence_repairs == 1 and source.stats.id_jumps == 0


def test_ids_rest_never_has_are_given_up_after_bounded_passes():
    fake = FakeKraken(PAIRS, tape_size=60, page_size=10, ws_drop=(20, 30), rate_limit_every=0)
    fake.start()
    fake.rest_trades = lambda query: (200, {"error": [], "result": {"X": [], "last": "0"}})
    producer = MemoryProducer()
    try:
        source = KrakenLiveSource(
            settings_for(fake, gap_repair_attempts=2), Publisher(producer, "x")
        )
        thread = run_until(
            source, lambda: all(len(v) >= 50 for v in published_ids(producer).values())
        )
        finish(source, thread)
    finally:
        fake.stop()
    kept = [t.trade_id for i, t in enumerate(fake.tape) if not 20 <= i < 30]
    for pair, ids in published_ids(producer).items():
        assert ids == kept, pair
    assert source.stats.gaps_unrepaired == 2 * 10 and source.stats.id_jumps == 2
