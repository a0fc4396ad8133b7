import json
import math

import pytest

from cryptopred_ingest.sources.kraken_ws import (
    Kind,
    parse_message,
    rfc3339_to_ms,
    subscribe_message,
)

PAIRS = ("BTC/USD", "ETH/EUR")


def item(**over):
    base = {
        "symbol": "BTC/USD",
        "side": "buy",
        "price": 67012.5,
        "qty": 0.0125,
        "ord_type": "limit",
        "trade_id": 74210345,
        "timestamp": "2026-11-01T12:00:00.123456Z",
    }
    base.update(over)
    return base


def trade_msg(*items, type_="update"):
    return json.dumps({"channel": "trade", "type": type_, "data": list(items)})


def test_subscribe_message_sets_snapshot_and_pairs():
    msg = json.loads(subscribe_message(PAIRS, snapshot=False, req_id=7))
    assert msg == {
        "method": "subscribe",
        "params": {"channel": "trade", "symbol": ["BTC/USD", "ETH/EUR"], "snapshot": False},
        "req_id": 7,
    }


def test_batched_trades_become_records():
    text = trade_msg(item(), item(symbol="ETH/EUR", side="sell", trade_id=9, price="3100.5"))
    parsed = parse_message(text, PAIRS)
    assert parsed.kind is Kind.TRADES and not parsed.rejects
    first, second = parsed.trades
    assert (first.pair, first.price, first.qty, first.side) == ("BTC/USD", 67012.5, 0.0125, "buy")
    assert first.trade_id == 74210345 and first.source == "kraken-ws"
    assert first.ts_ms == 1_793_534_400_123
    assert (second.pair, second.side, second.price, second.trade_id) == (
        "ETH/EUR",
        "sell",
        3100.5,
        9,
    )


def test_rfc3339_floor_to_ms():
    assert rfc3339_to_ms("1970-01-01T00:00:01.999999Z") == 1999
    assert rfc3339_to_ms("2026-11-01T12:00:00+01:00") == 1_793_530_800_000


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (
            '{"method":"subscribe","success":true,"result":{"channel":"trade","symbol":"BTC/USD"}}',
            Kind.ACK,
        ),
        (
            '{"method":"subscribe","success":false,"error":"Currency pair not supported"}',
            Kind.ERROR,
        ),
        ('{"channel":"heartbeat"}', Kind.HEARTBEAT),
        ('{"channel":"status","type":"update","data":[{"system":"online"}]}', Kind.STATUS),
        ('{"method":"pong","req_id":1}', Kind.PONG),
    ],
)
def test_control_messages(text, kind):
    parsed = parse_message(text, PAIRS)
    assert parsed.kind is kind and not parsed.trades and not parsed.rejects


def test_subscribe_error_detail_kept():
    parsed = parse_message('{"method":"subscribe","success":false,"error":"nope"}', PAIRS)
    assert parsed.detail == "nope"


@pytest.mark.parametrize(
    ("text", "reason_start"),
    [
        ("{not json", "malformed JSON"),
        ("[1,2]", "message: not a JSON object"),
        ('{"channel":"book","data":[]}', "unknown message type"),
        ('{"channel":"trade","type":"update","data":{}}', "trade: bad type or data"),
    ],
)
def test_bad_messages_are_single_rejects_with_whole_payload(text, reason_start):
    parsed = parse_message(text, PAIRS)
    assert parsed.kind is Kind.REJECT
    [rej] = parsed.rejects
    assert rej.reason.startswith(reason_start) and rej.raw == text


@pytest.mark.parametrize(
    ("over", "reason_start"),
    [
        ({"price": -1}, "price"),
        ({"price": 0}, "price"),
        ({"price": "NaN"}, "price"),
        ({"qty": math.inf}, "qty"),
        ({"qty": "abc"}, "could not convert"),
        ({"symbol": "DOGE/USD"}, "pair: unknown"),
        ({"side": "up"}, "side"),
        ({"trade_id": "x"}, "trade_id"),
        ({"timestamp": "1999-01-01T00:00:00Z"}, "ts_ms"),
        ({"timestamp": "yesterday"}, "Invalid isoformat"),
    ],
)
def test_bad_trade_items_are_rejected_others_kept(over, reason_start):
    bad = item(**over)
    parsed = parse_message(trade_msg(item(trade_id=1), bad, item(trade_id=2)), PAIRS)
    assert [t.trade_id for t in parsed.trades] == [1, 2]
    [rej] = parsed.rejects
    assert rej.reason.startswith(reason_start), rej.reason
    assert json.loads(rej.raw) == bad


def test_missing_field_named():
    bad = item()
    del bad["qty"]
    parsed = parse_message(trade_msg(bad), PAIRS)
    assert parsed.rejects[0].reason == "missing field: qty"
