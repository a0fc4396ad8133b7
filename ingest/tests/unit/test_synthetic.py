import hashlib
import itertools

import numpy as np
import pytest

from cryptopred_core.records import Trade, encode
from cryptopred_ingest.sources.synthetic import generate, pair_model

PAIRS = ["BTC/USD", "ETH/EUR", "XRP/USD", "ABC/XYZ"]


def digest(pairs, days, seed):
    h = hashlib.sha256()
    n = 0
    for batch in generate(pairs, days, seed):
        for trade in batch.trades:
            h.update(encode(trade))
            n += 1
    return h.hexdigest(), n


def test_same_seed_byte_identical_other_seed_differs():
    a = digest(PAIRS, 0.1, 42)
    assert a == digest(PAIRS, 0.1, 42)
    assert a[1] > 1000
    assert a[0] != digest(PAIRS, 0.1, 43)[0]


def test_pair_stream_independent_of_other_pairs():
    alone = [t for b in generate(["ETH/EUR"], 0.05, 1) for t in b.trades]
    mixed = [t for b in generate(["BTC/USD", "ETH/EUR"], 0.05, 1) for t in b.trades]
    assert alone == [t for t in mixed if t.pair == "ETH/EUR"]


def test_realistic_shape():
    trades = [t for b in generate(["BTC/USD", "XRP/EUR"], 0.5, 3) for t in b.trades]
    ts = [t.ts_ms for t in trades]
    assert ts == sorted(ts)
    btc = [t for t in trades if t.pair == "BTC/USD"]
    prices = np.array([t.price for t in btc])
    assert (
        0.7 * pair_model("BTC/USD").price
        < prices.min()
        < prices.max()
        < 1.3 * pair_model("BTC/USD").price
    )
    assert [t.trade_id for t in btc] == list(range(1, len(btc) + 1))
    # Poisson arrivals: rate near the model's
    expected = pair_model("BTC/USD").trades_per_s * 0.5 * 86400
    assert abs(len(btc) - expected) < 5 * expected**0.5
    # heavy-tailed sizes: the largest trade dwarfs the median
    qty = np.array([t.qty for t in btc])
    assert qty.max() > 20 * np.median(qty)
    returns = np.diff(np.log(prices))
    kurtosis = ((returns - returns.mean()) ** 4).mean() / returns.var() ** 2
    assert kurtosis > 4  # fatter tails than a normal (3)
    assert {t.side for t in btc} == {"buy", "sell"}


def test_unknown_pairs_get_stable_levels():
    assert pair_model("ABC/XYZ") == pair_model("ABC/XYZ")
    assert pair_model("ABC/XYZ").price > 0


def test_every_pair_ticks_in_a_small_fraction_of_its_price():
    """A coarse tick (a fixed 4 decimals on a 0.16 price) would leave most minutes flat, and no
    model could beat persistence on such a made-up pair."""
    made_up = [f"Q{i:04X}/USD" for i in range(300)]
    models = [pair_model(p) for p in [*made_up, "BTC/USD", "ETH/USD", "XRP/USD"]]
    prices = [m.price for m in models]
    assert min(prices) < 0.2 and max(prices) > 20_000  # the whole range of made-up levels
    for m in models:
        assert 1e-6 <= 10.0**-m.decimals / m.price <= 1e-5, m
    cheap = next(p for p in made_up if pair_model(p).price < 0.2)
    trades = [t for b in generate([cheap], 0.2, 1) for t in b.trades]
    decimals = pair_model(cheap).decimals
    assert all(round(trade.price, decimals) == trade.price for trade in trades)
    closes = _minute_closes(trades)
    moved = sum(a != b for a, b in itertools.pairwise(closes))
    assert moved / (len(closes) - 1) > 0.95


def _minute_closes(trades: list[Trade]) -> list[float]:
    """The last price of every minute with a trade, in time order."""
    closes: dict[int, float] = {}
    for trade in trades:
        closes[trade.ts_ms // 60_000] = trade.price
    return [closes[minute] for minute in sorted(closes)]


def _minute_return_autocorrelation(momentum: float) -> float:
    trades = [t for b in generate(["BTC/USD"], 3, 5, momentum=momentum) for t in b.trades]
    series = np.log(np.array(_minute_closes(trades)))
    r = np.diff(series)
    return float(np.corrcoef(r[:-1], r[1:])[0, 1])


def test_momentum_plants_minute_autocorrelation_and_zero_keeps_a_random_walk():
    assert abs(_minute_return_autocorrelation(0.0)) < 0.08
    assert _minute_return_autocorrelation(0.5) > 0.3


def test_start_ms_and_momentum_range():
    start_ms = 1_800_000_000_000 // 60_000 * 60_000
    trades = [t for b in generate(["ETH/USD"], 0.01, 2, start_ms=start_ms) for t in b.trades]
    assert trades and start_ms <= trades[0].ts_ms and trades[-1].ts_ms < start_ms + 864_000
    with pytest.raises(ValueError, match="momentum"):
        next(iter(generate(["ETH/USD"], 0.01, 2, momentum=1.0)))
