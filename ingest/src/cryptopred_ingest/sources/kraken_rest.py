"""Kraken REST `Trades`: one page per call, pagination by `since`/`last`, rate-limit backoff."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

from cryptopred_core.records import Trade
from cryptopred_ingest.publish import Reject, make_trade
from cryptopred_ingest.reconnect import Backoff

log = logging.getLogger(__name__)

REST_URL = "https://api.kraken.com"
TRADES_PATH = "/0/public/Trades"
PAGE_SIZE = 1000  # Kraken's maximum trades per call
SOURCE = "kraken-rest"
RATE_LIMIT_ERROR = "EAPI:Rate limit exceeded"
TRANSIENT_ERRORS = ("EService:Unavailable", "EService:Busy")
_REST_ASSETS = {"BTC": "XBT", "DOGE": "XDG"}


class RestError(Exception):
    """Kraken answered with an error (or a body that is not a Trades answer)."""


class RateLimitedError(RestError):
    """HTTP 429 or `EAPI:Rate limit exceeded`."""


class RestUnavailableError(RestError):
    """A transient failure: `EService:Unavailable`/`Busy`, or a body that is not a Trades
    answer (not JSON, not an object, no `result` or `last`), as a proxy in front may send."""


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


def parse_page(pair: str, body: Any) -> Page:
    """The `result` of a Trades response; raise RateLimitedError, RestUnavailableError
    (transient) or RestError on `error` or a body of the wrong shape."""
    if not isinstance(body, dict):
        raise RestUnavailableError(f"body is a {type(body).__name__}, not an object")
    errors = body.get("error") or []
    if not isinstance(errors, list):
        errors = [errors]
    if any(RATE_LIMIT_ERROR in str(e) for e in errors):
        raise RateLimitedError(RATE_LIMIT_ERROR)
    if any(code in str(e) for e in errors for code in TRANSIENT_ERRORS):
        raise RestUnavailableError("; ".join(map(str, errors))[:200])
    if errors:
        raise RestError("; ".join(map(str, errors))[:200])
    result = body.get("result")
    if not isinstance(result, dict):
        raise RestUnavailableError("body has no `result` object")
    try:
        last_ns = int(result["last"])
    except (KeyError, TypeError, ValueError):
        raise RestUnavailableError("result has no integer `last`") from None
    rows: Any = next((v for k, v in result.items() if k != "last"), [])
    if not isinstance(rows, list):
        raise RestUnavailableError("result's trades are not a list")
    trades: list[Trade] = []
    rejects: list[Reject] = []
    for row in rows:
        item = parse_row(pair, row)
        (rejects if isinstance(item, Reject) else trades).append(item)  # type: ignore[arg-type]
    return Page(trades, rejects, last_ns, len(rows))


RETRYABLE = (RateLimitedError, RestUnavailableError)  # network errors are RestUnavailableError


class TradesClient:
    """Calls `Trades` at most once per `min_interval_s`, backing off on rate limits, transient
    service errors and network errors (at most `max_retries` retries per page)."""

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

    def _read(self, url: str) -> bytes:
        """The body of one GET: HTTP 429 becomes RateLimitedError, a 5xx or a network error
        RestUnavailableError (both retried), any other non-2xx a RestError (not retried)."""
        try:
            resp = httpx.get(url, timeout=self.timeout_s)
        except httpx.TransportError as exc:
            raise RestUnavailableError(f"{type(exc).__name__}: {exc}") from None
        if resp.status_code == 429:
            raise RateLimitedError(f"HTTP 429 from {self.base_url}")
        if resp.status_code >= 500:
            raise RestUnavailableError(f"HTTP {resp.status_code} from {self.base_url}")
        if not resp.is_success:
            raise RestError(f"HTTP {resp.status_code} from {self.base_url}: {resp.text[:120]}")
        return resp.content

    def _get(self, pair: str, since_ns: int) -> Any:
        query = urllib.parse.urlencode({"pair": rest_pair(pair), "since": since_ns})
        url = f"{self.base_url}{TRADES_PATH}?{query}"
        if not url.startswith(("http://", "https://")):
            raise RestError(f"not an http(s) URL: {url}")
        wait_s = self._last_call_s + self.min_interval_s - time.monotonic()
        if wait_s > 0:
            self._sleep(wait_s)
        self._last_call_s = time.monotonic()
        self.calls += 1
        body = self._read(url)
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise RestUnavailableError(f"body is not JSON: {body[:60]!r}") from None

    def _wait(self, delay_s: float) -> None:
        self._sleep(delay_s)

    def _fetch_page(self, pair: str, since_ns: int) -> Page:
        try:
            return parse_page(pair, self._get(pair, since_ns))
        except RateLimitedError:
            self.rate_limited += 1
            raise

    def page(self, pair: str, since_ns: int) -> Page:
        """One page of trades after `since_ns`; retries (RETRYABLE) rate limits, transient
        service errors and network errors up to `max_retries` times, then raises the last one
        (a RestUnavailableError names the problem and the attempts)."""
        self.backoff.reset()

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            delay_s = state.next_action.sleep if state.next_action is not None else 0.0
            log.warning(
                "kraken REST %s since=%d: attempt %d failed (%s); retrying in %.2f s",
                pair,
                since_ns,
                state.attempt_number,
                exc,
                delay_s,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RETRYABLE),
            stop=tenacity.stop_after_attempt(self.max_retries + 1)
            | tenacity.stop_when_event_set(self.stop),
            wait=lambda _state: self.backoff.next_delay_s(),
            sleep=self._wait,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            return retrying(self._fetch_page, pair, since_ns)
        except RestUnavailableError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise RestUnavailableError(
                f"kraken REST Trades {pair} since={since_ns}: {exc} ({attempts} attempts)"
            ) from None

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
