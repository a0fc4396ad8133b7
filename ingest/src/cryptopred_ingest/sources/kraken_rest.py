"""Kraken REST `Trades`: one page per call, pagination by `since`/`last`, rate-limit backoff."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptopred.records import Trade
from cryptopred_ingest.publish import Reject, make_trade
from cryptopred_ingest.reconnect import Backoff

log = logging.getLogger(__name__)

REST_URL = "https://api.kraken.com"
TRADES_PATH = "/0/public/Trades"
PAGE_SIZE = 1000  # Kraken's maximum trades per call
SOURCE = "kraken-rest"
RATE_LIMIT_ERROR = "EAPI:Rate limit exceeded"
_REST_ASSETS = {"BTC": "XBT", "DOGE": "XDG"}


class RateLimitedError(Exception):
    """HTTP 429 or `EAPI:Rate limit exceeded`."""


class RestError(Exception):
    """Kraken answered with an error other than the rate limit."""


def rest_pair(pair: str) -> str:
    """`BTC/USD` -> `XBTUSD`, the name the REST API takes."""
    base, quote = pair.split("/")
    return _REST_ASSETS.get(base, base) + _REST_ASSETS.get(quote, quote)


@dataclass
class Page:
    """One `Trades` response: trades, rejects and `last`, the cursor of the next call (ns)."""

    trades: list[Trade]
    rejects: list[Reject]
    last_ns: int
    size: int


def parse_row(pair: str, row: Any) -> Trade | Reject:
    """`["67012.5","0.0125",1761998400.1234,"b","l","",74210345]` -> Trade."""
    raw = json.dumps(row, separators=(",", ":"))
    try:
        price_text, qty_text, time_s, side_code = row[0], row[1], row[2], row[3]
        trade_id = int(row[6])
        side = {"b": "buy", "s": "sell"}[side_code]
        ts_ms = int(float(time_s) * 1000)
        price, qty = float(price_text), float(qty_text)
    except (IndexError, KeyError, TypeError, ValueError, OverflowError) as exc:
        return Reject(f"rest row: malformed ({type(exc).__name__}: {exc})", raw)
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


def parse_page(pair: str, body: dict[str, Any]) -> Page:
    """The `result` of a Trades response; raise RateLimitedError or RestError on `error`."""
    errors = body.get("error") or []
    if any(RATE_LIMIT_ERROR in str(e) for e in errors):
        raise RateLimitedError(RATE_LIMIT_ERROR)
    if errors:
        raise RestError("; ".join(map(str, errors)))
    result = body["result"]
    last_ns = int(result["last"])
    rows: list[Any] = next((v for k, v in result.items() if k != "last"), [])
    trades: list[Trade] = []
    rejects: list[Reject] = []
    for row in rows:
        item = parse_row(pair, row)
        (rejects if isinstance(item, Reject) else trades).append(item)  # type: ignore[arg-type]
    return Page(trades, rejects, last_ns, len(rows))


class TradesClient:
    """Calls `Trades` at most once per `min_interval_s`, backing off on rate limits."""

    def __init__(
        self,
        base_url: str = REST_URL,
        timeout_s: float = 10.0,
        min_interval_s: float = 1.0,
        max_retries: int = 8,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], object] | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.min_interval_s = min_interval_s
        self.max_retries = max_retries
        self.page_size = page_size
        self.backoff = backoff or Backoff(initial_s=1.0, max_s=30.0)
        self.stop = stop or threading.Event()
        self._sleep = sleep or self.stop.wait
        self._last_call_s = float("-inf")
        self.rate_limited = 0
        self.calls = 0

    def _get(self, pair: str, since_ns: int) -> dict[str, Any]:
        query = urllib.parse.urlencode({"pair": rest_pair(pair), "since": since_ns})
        url = f"{self.base_url}{TRADES_PATH}?{query}"
        if not url.startswith(("http://", "https://")):
            raise RestError(f"not an http(s) URL: {url}")
        wait_s = self._last_call_s + self.min_interval_s - time.monotonic()
        if wait_s > 0:
            self._sleep(wait_s)
        self._last_call_s = time.monotonic()
        self.calls += 1
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:  # noqa: S310
                body: dict[str, Any] = json.loads(resp.read())
                return body
        except urllib.error.HTTPError as exc:
            if exc.code == 429:
                raise RateLimitedError(f"HTTP 429 from {self.base_url}") from None
            raise

    def page(self, pair: str, since_ns: int) -> Page:
        """One page of trades after `since_ns`; retries rate limits and network errors."""
        self.backoff.reset()
        while True:
            try:
                return parse_page(pair, self._get(pair, since_ns))
            except (RateLimitedError, urllib.error.URLError, OSError, ValueError) as exc:
                if isinstance(exc, RateLimitedError):
                    self.rate_limited += 1
                if self.backoff.attempt >= self.max_retries or self.stop.is_set():
                    raise
                delay_s = self.backoff.next_delay_s()
                log.warning(
                    "kraken REST %s since=%d: attempt %d failed (%s); retrying in %.2f s",
                    pair,
                    since_ns,
                    self.backoff.attempt,
                    exc,
                    delay_s,
                )
                self._sleep(delay_s)

    def pages(self, pair: str, since_ns: int, until_ns: int | None = None) -> Iterator[Page]:
        """Pages from `since_ns` until caught up (a short page) or past `until_ns`.

        A page cut at `until_ns` gets a `last_ns` just before the cut, so a later run resuming
        from it fetches the trades that were left out.
        """
        cursor_ns = since_ns
        while not self.stop.is_set():
            page = self.page(pair, cursor_ns)
            done_by_time = False
            if until_ns is not None:
                cutoff_ms = until_ns // 1_000_000  # trades at or after the cutoff ms are left
                kept = [t for t in page.trades if t.ts_ms < cutoff_ms]
                if len(kept) < len(page.trades) or page.last_ns >= until_ns:
                    done_by_time = True
                    page.last_ns = min(page.last_ns, cutoff_ms * 1_000_000 - 1)
                page.trades = kept
            yield page
            if page.size < self.page_size or page.last_ns <= cursor_ns or done_by_time:
                return
            cursor_ns = page.last_ns
