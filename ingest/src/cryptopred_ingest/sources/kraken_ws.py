"""Kraken WebSocket v2 `trade` channel: URL, subscribe message and the message parser."""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from cryptopred_core.records import Trade
from cryptopred_ingest.publish import Reject, make_trade

WS_URL = "wss://ws.kraken.com/v2"
CHANNEL = "trade"
SOURCE = "kraken-ws"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def subscribe_message(pairs: Collection[str], snapshot: bool, req_id: int = 1) -> str:
    """The subscribe request for the trade channel (snapshot set explicitly)."""
    params = {"channel": CHANNEL, "symbol": list(pairs), "snapshot": snapshot}
    return json.dumps({"method": "subscribe", "params": params, "req_id": req_id})


class Kind(Enum):
    TRADES = "trades"
    ACK = "ack"
    ERROR = "error"
    HEARTBEAT = "heartbeat"
    STATUS = "status"
    PONG = "pong"
    REJECT = "reject"


@dataclass
class Parsed:
    """One WS message, classified; trades and per-item rejects for `trade` messages."""

    kind: Kind
    trades: list[Trade] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    detail: str = ""


def rfc3339_to_ms(text: str) -> int:
    """`2023-09-25T07:48:36.925533Z` -> epoch milliseconds (floor)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without time zone: {text!r}")
    return (moment - _EPOCH) // _ONE_MS


_ONE_MS = datetime.resolution * 1000


def _number(item: dict[str, Any], name: str) -> float:
    value = item[name]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name}: not a number: {value!r:.40}")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        raise ValueError(f"{name}: too large ({len(str(value))} digits)") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r:.40}")
    return number


def parse_trade_item(item: Any, known_pairs: Collection[str]) -> Trade | Reject:
    """One element of a trade message's `data` list."""
    raw = json.dumps(item, separators=(",", ":"))
    if not isinstance(item, dict):
        return Reject("trade: not an object", raw)
    try:
        pair = str(item["symbol"])
        if pair not in known_pairs:
            return Reject(f"pair: unknown {pair!r}", raw)
        side = item["side"]
        if side not in ("buy", "sell"):
            return Reject(f"side: must be buy or sell, got {side!r}", raw)
        trade_id = item["trade_id"]
        if isinstance(trade_id, bool) or not isinstance(trade_id, int):
            return Reject(f"trade_id: must be an integer, got {trade_id!r}", raw)
        price = _number(item, "price")
        qty = _number(item, "qty")
        ts_ms = rfc3339_to_ms(str(item["timestamp"]))
    except KeyError as exc:
        return Reject(f"missing field: {exc.args[0]}", raw)
    except ValueError as exc:
        return Reject(str(exc), raw)
    return make_trade(
        raw,
        pair=pair,
        price=price,
        qty=qty,
        side=side,
        trade_id=trade_id,
        ts_ms=ts_ms,
        source=SOURCE,
    )


def parse_message(text: str | bytes, known_pairs: Collection[str]) -> Parsed:
    """Classify one WS v2 message and turn a trade batch into Trade records.

    A trade message carries several trades::

        {"channel": "trade", "type": "update", "data": [
          {"symbol": "BTC/USD", "side": "buy", "price": 67012.5, "qty": 0.0125,
           "ord_type": "limit", "trade_id": 74210345, "timestamp": "2026-11-01T12:00:00.123456Z"}]}

    Others: `{"method": "subscribe", "success": true, "result": {...}}` (ack, or
    `"success": false` with `"error"`), `{"channel": "heartbeat"}`, `{"channel": "status", ...}`.
    Anything unparseable (bad JSON, nesting too deep for the parser, a number out of range) is
    a single REJECT whose raw text is the whole message.
    """
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    try:
        return _classify(raw, known_pairs)
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
        reason = f"unparseable message: {type(exc).__name__}: {str(exc)[:80]}"
        return Parsed(Kind.REJECT, rejects=[Reject(reason, raw)])


def _classify(raw: str, known_pairs: Collection[str]) -> Parsed:
    try:
        msg = json.loads(raw)
    except json.JSONDecodeError as exc:
        return Parsed(Kind.REJECT, rejects=[Reject(f"malformed JSON: {exc}", raw)])
    if not isinstance(msg, dict):
        return Parsed(Kind.REJECT, rejects=[Reject("message: not a JSON object", raw)])
    method = msg.get("method")
    if method in ("subscribe", "unsubscribe"):
        if msg.get("success") is True:
            return Parsed(Kind.ACK, detail=json.dumps(msg.get("result")))
        return Parsed(Kind.ERROR, detail=str(msg.get("error", "subscribe failed")))
    if method == "pong":
        return Parsed(Kind.PONG)
    if "error" in msg and msg.get("success") is False:
        return Parsed(Kind.ERROR, detail=str(msg["error"]))
    channel = msg.get("channel")
    if channel == "heartbeat":
        return Parsed(Kind.HEARTBEAT)
    if channel == "status":
        return Parsed(Kind.STATUS, detail=raw[:300])
    if channel == CHANNEL:
        data = msg.get("data")
        if msg.get("type") not in ("snapshot", "update") or not isinstance(data, list):
            return Parsed(Kind.REJECT, rejects=[Reject("trade: bad type or data", raw)])
        parsed = Parsed(Kind.TRADES)
        for item in data:
            result = parse_trade_item(item, known_pairs)
            if isinstance(result, Reject):
                parsed.rejects.append(result)
            else:
                parsed.trades.append(result)
        return parsed
    return Parsed(Kind.REJECT, rejects=[Reject(f"unknown message type: {channel!r}", raw)])
