import pytest

from cryptopred_core.records import Trade, decode
from cryptopred_ingest.backfill import CursorStore, backfill, parse_time_ns
from cryptopred_ingest.publish import Publisher
from cryptopred_ingest.reconnect import Backoff
from cryptopred_ingest.sources.kraken_rest import (
    RateLimitedError,
    RestError,
    RestUnavailableError,
    TradesClient,
    parse_page,
    parse_row,
    rest_pair,
)
from cryptopred_testsupport.fake_kraken import BASE_TS_NS, FakeKraken
from cryptopred_testsupport.memory import MemoryProducer

PAIRS = ["BTC/USD", "ETH/EUR"]


@pytest.fixture
def fake():
    server = FakeKraken(PAIRS, tape_size=120, page_size=25, rate_limit_every=3).start()
    try:
        yield server
    finally:
        server.stop()


def client(fake, **kw):
    return TradesClient(
        fake.rest_url,
        timeout_s=5,
        min_interval_s=0,
        page_size=fake.page_size,
        backoff=Backoff(0.001, 0.01),
        **kw,
    )


def test_rest_pair_names():
    assert rest_pair("BTC/USD") == "XBTUSD" and rest_pair("ETH/EUR") == "ETHEUR"


def test_parse_row_and_page_errors():
    trade = parse_row("BTC/USD", ["67012.5", "0.0125", 1767225600.1234, "s", "l", "", 99])
    assert isinstance(trade, Trade) and (trade.side, trade.trade_id, trade.ts_ms) == (
        "sell",
        99,
        1767225600123,
    )
    assert parse_row("BTC/USD", ["x", "1", 1.0, "b", "l", "", 1]).reason.startswith("rest row")
    assert parse_row("BTC/USD", ["-1", "1", 1767225600.0, "b", "l", "", 1]).reason.startswith(
        "price"
    )
    with pytest.raises(RateLimitedError):
        parse_page("BTC/USD", {"error": ["EAPI:Rate limit exceeded"]})
    with pytest.raises(RestError, match="EQuery"):
        parse_page("BTC/USD", {"error": ["EQuery:Unknown asset pair"]})


def test_pages_paginate_through_429s_without_loss_or_repeat(fake):
    rest = client(fake)
    ids = [t.trade_id for page in rest.pages("BTC/USD", 0) for t in page.trades]
    assert ids == [t.trade_id for t in fake.tape]
    assert rest.rate_limited >= 2 and fake.rest_limited == rest.rate_limited


def test_until_stops_early(fake):
    until_ns = fake.tape[30].ts_ns
    ids = [t.trade_id for p in client(fake).pages("ETH/EUR", 0, until_ns) for t in p.trades]
    assert ids == [t.trade_id for t in fake.tape[:30]]


def test_rate_limit_gives_up_after_max_retries(fake):
    fake.rate_limit_every = 1
    with pytest.raises(RateLimitedError):
        client(fake, max_retries=2).page("BTC/USD", 0)
    assert fake.rest_calls == 3


def test_a_5xx_is_retried_and_a_4xx_is_not(fake, caplog):
    fake.rate_limit_every = 0
    fake.rest_unavailable_next = 2
    page = client(fake, max_retries=3).page("BTC/USD", 0)
    assert page.trades and fake.rest_calls == 3
    assert sum("HTTP 503" in r.getMessage() for r in caplog.records) == 2
    caplog.clear()
    wrong = TradesClient(f"{fake.rest_url}/nowhere", timeout_s=5, min_interval_s=0, max_retries=3)
    with pytest.raises(RestError, match="HTTP 404") as raised:
        wrong.page("BTC/USD", 0)
    assert not isinstance(raised.value, RestUnavailableError | RateLimitedError)
    assert wrong.calls == 1 and not any("retrying" in r.getMessage() for r in caplog.records)


def test_unreachable_exchange_is_retried_then_raised(caplog):
    rest = TradesClient(
        "http://127.0.0.1:9",
        timeout_s=1,
        min_interval_s=0,
        max_retries=2,
        backoff=Backoff(0.001, 0.01),
    )
    with pytest.raises(RestUnavailableError, match=r"ConnectError.*\(3 attempts\)"):
        rest.page("BTC/USD", 0)
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2


def test_backfill_resumes_without_duplicates(fake, tmp_path):
    producer = MemoryProducer()
    pub = Publisher(producer, stage="ingest-backfill")
    store = CursorStore(tmp_path / "cursors")
    half_ns = fake.tape[60].ts_ns
    first = backfill(PAIRS, 0, half_ns, client(fake), pub, store)
    assert first == {"BTC/USD": 60, "ETH/EUR": 60}
    assert store.load("BTC/USD").last_trade_id == fake.tape[59].trade_id
    second = backfill(PAIRS, 0, None, client(fake), pub, store)
    assert second == {"BTC/USD": 60, "ETH/EUR": 60}
    third = backfill(PAIRS, 0, None, client(fake), pub, store)
    assert third == {"BTC/USD": 0, "ETH/EUR": 0}
    for pair in PAIRS:
        ids = [decode(v, Trade).trade_id for k, v in producer.topic("trades") if k == pair.encode()]
        assert ids == [t.trade_id for t in fake.tape]


def test_parse_time():
    now = BASE_TS_NS
    assert parse_time_ns("6h", now) == now - 6 * 3600 * 10**9
    assert parse_time_ns("2026-11-01T00:00Z", now) == 1_793_491_200 * 10**9
    assert parse_time_ns("2026-11-01T00:00", now) == 1_793_491_200 * 10**9
    with pytest.raises(ValueError, match="bad time"):
        parse_time_ns("yesterday", now)
