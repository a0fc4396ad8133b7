"""Delivery failures stop a source and never advance a cursor or saved state."""

import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from cryptopred_core.records import Trade
from cryptopred_ingest.backfill import Cursor, CursorStore, backfill_pair
from cryptopred_ingest.publish import Batch, DeliveryError, DeliveryTracker, Publisher
from cryptopred_ingest.pump import pump
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.sources.kraken_live import KrakenLiveSource
from cryptopred_ingest.sources.kraken_rest import Page

TS = 1_767_225_600_000


def trade(i: int, pair: str = "BTC/USD") -> Trade:
    return Trade(pair=pair, price=1.0, qty=1.0, side="buy", trade_id=i, ts_ms=TS + i, source="t")


class LossyProducer:
    """Fails every record produced after `fail_after` (a delivery report with an error);
    `stuck` records stay queued at every flush."""

    def __init__(self, fail_after: int = 10**9, stuck: int = 0, report: Any = None) -> None:
        self.report = report  # the producer-wide on_delivery, if any
        self.fail_after = fail_after
        self.stuck = stuck
        self.produced = 0
        self._reports: list[Callable[[Any, Any], None]] = []

    def produce(
        self, topic: str, value: Any = None, key: Any = None, on_delivery: Any = None
    ) -> None:
        self.produced += 1
        callback = on_delivery or self.report
        if self.produced > self.fail_after and callback is not None:
            self._reports.append(callback)

    def poll(self, timeout: float) -> int:
        reports, self._reports = self._reports, []
        for report in reports:
            report("Local: Message timed out", None)
        return len(reports)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return self.stuck


def test_flush_raises_naming_expired_records():
    pub = Publisher(LossyProducer(fail_after=2), "s")
    for i in range(5):
        pub.trade(trade(i))
    with pytest.raises(DeliveryError, match=r"^3 records not delivered") as info:
        pub.flush(1.0)
    assert info.value.undelivered == 3
    assert "timed out" in str(info.value)


def test_flush_raises_naming_records_still_queued():
    pub = Publisher(LossyProducer(stuck=4), "s")
    pub.trade(trade(1))
    with pytest.raises(DeliveryError, match=r"^4 records not delivered") as info:
        pub.flush(0.1)
    assert info.value.undelivered == 4


def test_clean_flush_does_not_raise_and_errors_stay_sticky():
    producer = LossyProducer(fail_after=1)
    pub = Publisher(producer, "s")
    pub.trade(trade(1))
    pub.flush(1.0)
    pub.trade(trade(2))
    with pytest.raises(DeliveryError):
        pub.flush(1.0)
    with pytest.raises(DeliveryError, match=r"^1 records"):  # a later flush still fails
        pub.flush(1.0)


def test_delivery_error_is_not_a_network_error():
    assert not issubclass(DeliveryError, OSError | ConnectionError | TimeoutError)


def test_pump_raises_after_lost_records():
    with pytest.raises(DeliveryError):
        pump([Batch(trades=[trade(i) for i in range(3)])], Publisher(LossyProducer(0), "s"))


class OnePageClient:
    def __init__(self, trades: list[Trade]) -> None:
        self.trades = trades

    def pages(self, pair: str, since_ns: int, until_ns: int | None = None):
        yield Page(self.trades, [], last_ns=TS * 1_000_000 + 10**9, size=len(self.trades))


def test_backfill_cursor_not_saved_past_undelivered_page(tmp_path):
    store = CursorStore(tmp_path)
    store.save("BTC/USD", Cursor(5, 4))
    pub = Publisher(LossyProducer(fail_after=1), "ingest-backfill")
    client = OnePageClient([trade(i) for i in range(5, 9)])
    with pytest.raises(DeliveryError, match=r"^3 records"):
        backfill_pair("BTC/USD", 0, None, client, pub, store)  # type: ignore[arg-type]
    assert store.load("BTC/USD") == Cursor(5, 4)


def test_live_state_not_saved_past_undelivered_trades(tmp_path):
    state = tmp_path / "live.json"
    settings = IngestSettings(pairs=["BTC/USD"])
    source = KrakenLiveSource(
        settings, Publisher(LossyProducer(fail_after=1), "x"), state_path=state
    )
    for t in (trade(1), trade(2)):
        assert source.dedup.admit(t)
        source.publisher.trade(t)
    with pytest.raises(DeliveryError):
        source.checkpoint()
    assert not state.exists()
    source.publisher = Publisher(LossyProducer(), "x")
    source.checkpoint()
    assert json.loads(state.read_text()) == {"BTC/USD": {"trade_id": 2, "ts_ms": TS + 2}}


def test_replay_cli_exits_nonzero_naming_undelivered(monkeypatch, tmp_path):
    from cryptopred_ingest import cli, publish

    path = tmp_path / "t.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "pair": "BTC/USD",
                    "price": 1,
                    "qty": 1,
                    "side": "buy",
                    "trade_id": i,
                    "ts_ms": TS + i,
                }
            )
            + "\n"
            for i in range(4)
        )
    )
    monkeypatch.setenv("CRYPTOPRED_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(cli, "ensure_topics", lambda *a, **k: None)
    monkeypatch.setattr(
        publish,
        "make_producer",
        lambda settings, **kw: LossyProducer(fail_after=1, report=kw["on_delivery"]),
    )
    result = CliRunner().invoke(cli.app, ["replay", "--file", str(path), "--format", "jsonl"])
    assert result.exit_code == 1, result.output
    assert "3 records not delivered" in result.output


def test_a_producer_wide_tracker_catches_failures_without_per_record_callbacks():
    tracker = DeliveryTracker()
    producer = LossyProducer(fail_after=0, report=tracker.on_delivery)
    produced_with = []
    original = producer.produce

    def produce(topic, value=None, key=None, on_delivery=None):
        produced_with.append(on_delivery)
        original(topic, value, key)

    producer.produce = produce
    pub = Publisher(producer, "s", tracker=tracker)
    pub.trade(trade(1))
    with pytest.raises(DeliveryError, match=r"^1 records"):
        pub.flush(1.0)
    assert produced_with == [None]


def test_make_publisher_wires_the_tracker_into_the_producer(monkeypatch):
    from cryptopred_core.settings import Settings
    from cryptopred_ingest import publish

    seen = {}
    monkeypatch.setattr(
        publish, "make_producer", lambda settings, **kw: seen.update(kw) or LossyProducer()
    )
    pub = publish.make_publisher(Settings(), "s", **{"linger.ms": 7})
    assert seen["on_delivery"] == pub.tracker.on_delivery
    assert seen["delivery.report.only.error"] is True and seen["linger.ms"] == 7
