import json
import threading
import time

import pytest

from cryptopred_core.records import DeadLetter, Trade, decode
from cryptopred_ingest.publish import Publisher
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.sources.kraken_live import KrakenLiveSource
from cryptopred_testsupport.fake_kraken import FakeKraken
from cryptopred_testsupport.memory import MemoryProducer

PAIRS = ["BTC/USD", "ETH/EUR"]


def settings_for(fake, **kw):
    return IngestSettings(
        pairs=PAIRS,
        kraken_ws_url=fake.ws_url,
        kraken_rest_url=fake.rest_url,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        watchdog_s=1.0,
        rest_min_interval_s=0,
        rest_page_size=fake.page_size,
        **kw,
    )


def run_until(source, done, timeout_s=20.0):
    thread = threading.Thread(target=source.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not done():
        time.sleep(0.05)
    source.stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def ids_by_pair(producer):
    out = {p: [] for p in PAIRS}
    for key, value in producer.topic("trades"):
        out[key.decode()].append(decode(value, Trade).trade_id)
    return out


def test_reconnect_silence_and_gap_repair_lose_and_double_nothing():
    # conn 0: 0..40 then forced close; 40..60 dropped; conn 1: 60..100 then silence
    # (watchdog); conn 2: 100..150 then heartbeats.
    fake = FakeKraken(
        PAIRS,
        tape_size=150,
        page_size=15,
        rate_limit_every=4,
        segments=[(0, 40, "close"), (60, 100, "silence"), (100, 150, "idle")],
    ).start()
    producer = MemoryProducer()
    try:
        source = KrakenLiveSource(settings_for(fake), Publisher(producer, "ingest-live"))
        run_until(source, lambda: all(len(v) >= 150 for v in ids_by_pair(producer).values()))
    finally:
        fake.stop()
    expected = [t.trade_id for t in fake.tape]
    for pair, ids in ids_by_pair(producer).items():
        assert sorted(ids) == expected, pair  # none lost
        assert len(ids) == len(set(ids)), pair  # none doubled
    assert fake.connections >= 3 and source.stats.reconnects >= 2
    assert source.stats.gaps_repaired == 2 * 20  # the dropped stretch of each pair
    assert fake.rest_limited >= 1
    for request in fake.subscribe_requests:
        assert request["params"] == {"channel": "trade", "symbol": PAIRS, "snapshot": False}


def test_bad_messages_go_to_dlq_and_source_keeps_going():
    bad = [
        "{oops",
        '{"channel":"book","data":[]}',
        json.dumps(
            {
                "channel": "trade",
                "type": "update",
                "data": [
                    {
                        "symbol": "BTC/USD",
                        "side": "buy",
                        "price": "NaN",
                        "qty": 1,
                        "trade_id": 1,
                        "timestamp": "2026-01-01T00:00:00Z",
                    },
                    {
                        "symbol": "DOGE/USD",
                        "side": "buy",
                        "price": 1,
                        "qty": 1,
                        "trade_id": 1,
                        "timestamp": "2026-01-01T00:00:00Z",
                    },
                    {
                        "symbol": "BTC/USD",
                        "side": "buy",
                        "price": 1,
                        "qty": 1,
                        "trade_id": 2,
                        "timestamp": "2150-01-01T00:00:00Z",
                    },
                    {
                        "symbol": "BTC/USD",
                        "side": "buy",
                        "qty": 1,
                        "trade_id": 3,
                        "timestamp": "2026-01-01T00:00:00Z",
                    },
                ],
            }
        ),
    ]
    fake = FakeKraken(PAIRS, tape_size=30, segments=[(0, 30, "idle")], extra_messages=bad).start()
    producer = MemoryProducer()
    try:
        settings = settings_for(fake).model_copy(update={"pairs": [*PAIRS, "ZZZ/USD"]})
        source = KrakenLiveSource(settings, Publisher(producer, "ingest-live"))
        run_until(source, lambda: len(producer.topic("trades")) >= 60)
    finally:
        fake.stop()
    letters = [decode(v, DeadLetter) for _, v in producer.topic("dlq")]
    reasons = [d.reason.split(":")[0] for d in letters]
    assert reasons == [
        "exchange error",
        "malformed JSON",
        "unknown message type",
        "price",
        "pair",
        "ts_ms",
        "missing field",
    ]
    assert "ZZZ/USD" in letters[0].raw and letters[1].raw == "{oops"
    assert all(d.stage == "ingest-live" for d in letters)
    assert len(producer.topic("trades")) == 60 and fake.connections == 1


def test_unreachable_exchange_retries_with_backoff_not_busy(caplog):
    settings = IngestSettings(
        pairs=PAIRS,
        kraken_ws_url="ws://127.0.0.1:9/v2",
        backoff_initial_s=0.1,
        backoff_max_s=0.2,
        backoff_jitter=0.0,
    )
    source = KrakenLiveSource(settings, Publisher(MemoryProducer(), "ingest-live"))
    timer = threading.Timer(0.8, source.stop.set)
    timer.start()
    source.run()
    timer.join()
    lines = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert 3 <= len(lines) <= 7
    assert source.stats.connects == 0


@pytest.mark.parametrize("snapshot", [True, False])
def test_snapshot_setting_is_sent(snapshot):
    fake = FakeKraken(PAIRS, tape_size=5, segments=[(0, 5, "idle")]).start()
    producer = MemoryProducer()
    try:
        source = KrakenLiveSource(
            settings_for(fake, kraken_snapshot=snapshot), Publisher(producer, "x")
        )
        run_until(source, lambda: len(producer.topic("trades")) >= 10)
    finally:
        fake.stop()
    assert fake.subscribe_requests[0]["params"]["snapshot"] is snapshot


def test_restarted_source_resumes_from_saved_state(tmp_path):
    # first process sees 0..40; trades 40..60 happen while it is down; the restart gets 60..100
    fake = FakeKraken(PAIRS, tape_size=100, segments=[(0, 40, "idle"), (60, 100, "idle")]).start()
    state = tmp_path / "live-state.json"
    first, second = MemoryProducer(), MemoryProducer()
    try:
        source = KrakenLiveSource(settings_for(fake), Publisher(first, "x"), state_path=state)
        run_until(source, lambda: len(first.topic("trades")) >= 80)
        assert state.exists()
        again = KrakenLiveSource(settings_for(fake), Publisher(second, "x"), state_path=state)
        run_until(again, lambda: len(second.topic("trades")) >= 120)
    finally:
        fake.stop()
    both = ids_by_pair(first)
    for pair, ids in ids_by_pair(second).items():
        both[pair] += ids
    for pair, ids in both.items():
        assert sorted(ids) == [t.trade_id for t in fake.tape], pair
    assert again.stats.gaps_repaired == 2 * 20
