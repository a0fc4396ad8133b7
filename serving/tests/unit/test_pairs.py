"""Pair spellings in URLs against the record's pair rule."""

from __future__ import annotations

import pytest

from cryptopred_core.records import PAIR_PATTERN
from cryptopred_serving.pairs import model_name, pair_from_url, pair_to_url


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("BTC-USD", "BTC/USD"),
        ("btc-usd", "BTC/USD"),
        ("BTC%2FUSD", "BTC/USD"),
        ("eth_eur", "ETH/EUR"),
        ("1inch-usd", "1INCH/USD"),
        ("BTCUSD", None),
        ("B-USD", None),
        ("BTC-USD-EUR", None),
        ("BTC.USD", None),
    ],
)
def test_a_url_pair_is_read_by_the_record_rule(text: str, pair: str | None) -> None:
    assert pair_from_url(text) == pair
    if pair is not None:
        assert PAIR_PATTERN.fullmatch(pair)
        assert pair_from_url(pair_to_url(pair)) == pair


def test_model_names_spell_the_pair_for_urls() -> None:
    assert model_name("BTC/USD", 60) == "BTC-USD-60s"
