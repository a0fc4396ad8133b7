"""A seeded, realistic trade generator: regime-switching returns, Poisson arrivals, heavy tails.

Each pair has its own random stream derived from (seed, pair), so adding a pair does not change
another pair's trades, and the same seed always yields byte-identical trades.

`momentum` plants a learnable signal: each minute's log return gains `momentum` times the
previous minute's (an AR(1) drift, added at the minute's first trade). With 0 the prices are a
random walk that no model can forecast better than persistence.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cryptopred_core.records import Trade
from cryptopred_ingest.publish import Batch

SOURCE = "synthetic"
DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
BLOCK_MS = 3_600_000  # trades are generated an hour at a time
MINUTE_MS = 60_000


@dataclass(frozen=True)
class PairModel:
    price: float  # starting price
    trades_per_s: float  # Poisson arrival rate
    qty_scale: float  # median trade size in base units
    decimals: int  # price tick


_KNOWN = {
    "BTC/USD": PairModel(95_000.0, 1.2, 0.01, 1),
    "BTC/EUR": PairModel(88_000.0, 0.6, 0.01, 1),
    "ETH/USD": PairModel(3_400.0, 0.9, 0.2, 2),
    "ETH/EUR": PairModel(3_150.0, 0.45, 0.2, 2),
    "SOL/USD": PairModel(190.0, 0.6, 3.0, 2),
    "SOL/EUR": PairModel(176.0, 0.3, 3.0, 2),
    "XRP/USD": PairModel(2.3, 0.5, 800.0, 5),
    "XRP/EUR": PairModel(2.1, 0.25, 800.0, 5),
}

# Two regimes, calm and stressed: per-second volatility of log price and the chance per minute
# of leaving the regime.
_VOL_PER_S = np.array([0.00008, 0.0003])
_LEAVE_PER_MIN = np.array([0.01, 0.05])


def pair_model(pair: str) -> PairModel:
    """The model of a known pair, or a stable made-up one derived from the pair's name."""
    if pair in _KNOWN:
        return _KNOWN[pair]
    h = zlib.crc32(pair.encode())
    price = 10.0 ** ((h % 600) / 100.0 - 1.0)  # 0.1 .. 1e5
    # a tick of 1e-6 to 1e-5 of the price, as the known pairs have: a fixed 4 decimals would
    # move a 0.16 price by whole 0.06 % ticks (most minutes flat, no model beating persistence)
    decimals = max(0, 5 - math.floor(math.log10(price)))
    return PairModel(round(price, decimals), 0.2 + (h >> 10) % 8 / 10.0, 100.0 / price, decimals)


class _PairStream:
    def __init__(
        self, pair: str, seed: int, momentum: float = 0.0, price: float | None = None
    ) -> None:
        self.pair = pair
        self.momentum = momentum
        self.last_minute_return = 0.0
        self.model = pair_model(pair)
        key = zlib.crc32(pair.encode())
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, key]))
        self.log_price = float(np.log(price or self.model.price))
        self.regime = 0
        self.trade_id = 0
        self.last_ts_ms = 0

    def block(self, start_ms: int, span_ms: int) -> tuple[npt.NDArray[np.int64], list[Trade]]:
        rng, model = self.rng, self.model
        n = int(rng.poisson(model.trades_per_s * span_ms / 1000.0))
        minutes = max(1, span_ms // MINUTE_MS)
        regimes = np.empty(minutes, dtype=np.int64)
        switches = rng.random(minutes)
        for m in range(minutes):
            if switches[m] < _LEAVE_PER_MIN[self.regime]:
                self.regime = 1 - self.regime
            regimes[m] = self.regime
        ts_ms = np.sort(start_ms + rng.integers(0, span_ms, size=n)).astype(np.int64)
        if n == 0:
            return ts_ms, []
        gaps_s = np.diff(np.concatenate(([max(self.last_ts_ms, start_ms)], ts_ms))) / 1000.0
        vol = _VOL_PER_S[regimes[np.minimum((ts_ms - start_ms) // MINUTE_MS, minutes - 1)]]
        shocks = rng.standard_t(4, size=n) / np.sqrt(2.0)  # unit variance, heavy tails
        steps = vol * np.sqrt(np.maximum(gaps_s, 0.001)) * shocks
        if self.momentum:
            steps = self._with_momentum(steps, (ts_ms - start_ms) // MINUTE_MS, minutes)
        log_prices = self.log_price + np.cumsum(steps)
        self.log_price = float(log_prices[-1])
        prices = np.round(np.exp(log_prices), model.decimals)
        prices = np.maximum(prices, 10.0**-model.decimals)
        sizes = model.qty_scale * rng.lognormal(0.0, 1.0, size=n) * (1 + rng.pareto(1.8, size=n))
        qtys = np.maximum(np.round(sizes, 8), 1e-8)
        buys = rng.random(n) < 0.5 + 0.3 * np.sign(steps)
        first_id = self.trade_id + 1
        self.trade_id += n
        self.last_ts_ms = int(ts_ms[-1])
        trades = [
            Trade(
                pair=self.pair,
                price=p,
                qty=q,
                side="buy" if b else "sell",
                trade_id=i,
                ts_ms=t,
                source=SOURCE,
            )
            for p, q, b, i, t in zip(
                prices.tolist(),
                qtys.tolist(),
                buys.tolist(),
                range(first_id, first_id + n),
                ts_ms.tolist(),
                strict=True,
            )
        ]
        return ts_ms, trades

    def _with_momentum(
        self, steps: npt.NDArray[np.float64], minute_of: npt.NDArray[np.int64], minutes: int
    ) -> npt.NDArray[np.float64]:
        """Add `momentum` x the previous minute's return to each minute's first trade."""
        noise = np.bincount(minute_of, weights=steps, minlength=minutes)
        counts = np.bincount(minute_of, minlength=minutes)
        first = np.searchsorted(minute_of, np.arange(minutes))
        out = steps.copy()
        previous = self.last_minute_return
        for m in range(minutes):
            if counts[m] == 0:
                previous = 0.0  # no trade, no move
                continue
            drift = self.momentum * previous
            out[first[m]] += drift
            previous = float(noise[m]) + drift
        self.last_minute_return = previous
        return out


def generate(
    pairs: Sequence[str],
    days: float,
    seed: int,
    start_ms: int = DEFAULT_START_MS,
    momentum: float = 0.0,
    start_prices: Mapping[str, float] | None = None,
) -> Iterator[Batch]:
    """Batches of trades of every pair, one hour at a time, in time order within each batch.

    `start_prices` replaces the model's starting price of a pair (to go on from earlier data).
    """
    if not -1.0 < momentum < 1.0:
        raise ValueError(f"momentum must be in (-1, 1), got {momentum}")
    prices = start_prices or {}
    streams = [_PairStream(p, seed, momentum, prices.get(p)) for p in pairs]
    end_ms = start_ms + int(days * 86_400_000)
    block_start_ms = start_ms
    while block_start_ms < end_ms:
        span_ms = min(BLOCK_MS, end_ms - block_start_ms)
        stamps: list[npt.NDArray[np.int64]] = []
        trades: list[Trade] = []
        for stream in streams:
            ts, block = stream.block(block_start_ms, span_ms)
            stamps.append(ts)
            trades.extend(block)
        if trades:
            order = np.argsort(np.concatenate(stamps), kind="stable")
            trades = [trades[i] for i in order.tolist()]
        yield Batch(trades=trades)
        block_start_ms += span_ms
