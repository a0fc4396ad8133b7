"""Bad exchange input goes to the dlq or is retried; it never tears down a session."""

import json

import pytest

from cryptopred_ingest.publish import Publisher
from cryptopred_ingest.reconnect import Backoff
from cryptopred_ingest.sources.kraken_rest import (
    RateLimitedError,
    RestError,
    RestUnavailableError,
    TradesClient,
)
from cryptopred_ingest.sources.kraken_ws import Kind, parse_message
from cryptopred_testsupport.memory import MemoryProducer

PAIRS = ("BTC/USD",)


def trade_item(**over):
    base = {
        "symbol": "BTC/USD",
        "side": "buy",
        "price": 67012.5,
        "qty": 0.0125,
        "trade_id": 74210345,
        "timestamp": "2026-11-01T12:00:00.123456Z",
    }
    return base | over


def test_huge_integer_price_is_a_short_reject_and_others_kept():
    huge = int("9" * 400)
    text = json.dumps(
        {
            "channel": "trade",
            "type": "update",
            "data": [trade_item(price=huge), trade_item(trade_id=74210346)],
        }
    )
    parsed = parse_message(text, PAIRS)
    assert parsed.kind is Kind.TRADES and [t.trade_id for t in parsed.trades] == [74210346]
    [rej] = parsed.rejects
    assert rej.reason.startswith("price") and len(rej.reason) < 100


def test_deeply_nested_json_is_a_reject():
    text = "[" * 100_000 + "]" * 100_000
    parsed = parse_message(text, PAIRS)
    assert parsed.kind is Kind.REJECT
    [rej] = parsed.rejects
    assert rej.reason.startswith("unparseable message") and rej.raw == text


def test_reject_reason_and_log_line_stay_short(caplog):
    producer = MemoryProducer()
    pub = Publisher(producer, "s")
    pub.reject("x" * 10_000, "y" * 100_000)
    assert len(caplog.records[-1].getMessage()) < 500


class ScriptedClient(TradesClient):
    """A REST client whose HTTP answers are scripted bodies (bytes), in order."""

    def __init__(self, bodies, **kw):
        super().__init__(min_interval_s=0, backoff=Backoff(0.001, 0.002), **kw)
        self.bodies = list(bodies)

    def _read(self, url):
        return self.bodies.pop(0)


GOOD = json.dumps(
    {
        "error": [],
        "result": {"XBTUSD": [["67012.5", "0.01", 1761998400.1234, "b", "l", "", 7]], "last": "5"},
    }
).encode()


@pytest.mark.parametrize(
    "bad",
    [
        b'{"error": []}',  # no result
        b"[1, 2, 3]",  # a list body
        b"<html>502 Bad Gateway</html>",  # not JSON
        b'{"error": ["EService:Unavailable"]}',
        b'{"error": ["EService:Busy"], "result": {}}',
        b'{"error": [], "result": {"XBTUSD": []}}',  # no last
    ],
)
def test_transient_rest_answers_are_retried(bad):
    client = ScriptedClient([bad, bad, GOOD], max_retries=3)
    page = client.page("BTC/USD", 0)
    assert [t.trade_id for t in page.trades] == [7] and client.calls == 3


def test_transient_rest_answers_give_up_with_one_clear_error():
    client = ScriptedClient([b'{"error": ["EService:Unavailable"]}'] * 4, max_retries=3)
    with pytest.raises(RestUnavailableError, match=r"EService:Unavailable.*4 attempts"):
        client.page("BTC/USD", 0)
    assert client.calls == 4


def test_rate_limit_retried_then_raised():
    limited = b'{"error": ["EAPI:Rate limit exceeded"]}'
    client = ScriptedClient([limited, GOOD], max_retries=2)
    assert len(client.page("BTC/USD", 0).trades) == 1 and client.rate_limited == 1
    client = ScriptedClient([limited] * 3, max_retries=2)
    with pytest.raises(RateLimitedError):
        client.page("BTC/USD", 0)


def test_permanent_rest_errors_are_not_retried():
    client = ScriptedClient([b'{"error": ["EQuery:Unknown asset pair"]}', GOOD], max_retries=3)
    with pytest.raises(RestError, match="EQuery"):
        client.page("BTC/USD", 0)
    assert client.calls == 1


def test_backfill_cli_gives_up_with_one_line_naming_the_problem(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from cryptopred_ingest import cli, publish

    def unavailable(self, url):
        return b'{"error": ["EService:Unavailable"]}'

    monkeypatch.setenv("CRYPTOPRED_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CRYPTOPRED_REST_MAX_RETRIES", "1")
    monkeypatch.setenv("CRYPTOPRED_BACKOFF_INITIAL_S", "0.001")
    monkeypatch.setenv("CRYPTOPRED_REST_MIN_INTERVAL_S", "0")
    monkeypatch.setattr(cli, "ensure_topics", lambda *a, **k: None)
    monkeypatch.setattr(publish, "make_producer", lambda *a, **k: MemoryProducer())
    monkeypatch.setattr(TradesClient, "_read", unavailable)
    result = CliRunner().invoke(cli.app, ["backfill", "--since", "1h", "--pairs", "BTC/USD"])
    assert result.exit_code == 1, result.output
    assert "EService:Unavailable" in result.output and "2 attempts" in result.output
    assert "Traceback" not in result.output
