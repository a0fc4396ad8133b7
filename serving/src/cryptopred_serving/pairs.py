"""Pair spellings: `BTC/USD` in records, `BTC-USD` in URLs and model names."""

from __future__ import annotations

from urllib.parse import unquote

from cryptopred_core.records import PAIR_PATTERN


def pair_from_url(text: str) -> str | None:
    """`BTC-USD`, `btc-usd`, `BTC%2FUSD` or `BTC/USD` → `BTC/USD`; None if malformed."""
    pair = unquote(text).strip().upper().replace("-", "/").replace("_", "/")
    return pair if PAIR_PATTERN.fullmatch(pair) else None


def pair_to_url(pair: str) -> str:
    return pair.replace("/", "-")


def model_name(pair: str, candle_seconds: int) -> str:
    """Registered model name, e.g. `BTC-USD-60s`."""
    return f"{pair_to_url(pair)}-{candle_seconds}s"
