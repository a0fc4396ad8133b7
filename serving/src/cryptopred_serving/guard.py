"""Bounds on what a client may make the API do, checked before a request body is read.

`RequestGuard` (ASGI middleware) acts on requests that carry a body (POST, PUT, PATCH): the
routes that compute (`POST /v1/predict` runs the model). GETs pass untouched: they answer from
caches or one bounded DB read, and the cached ones never wait behind a body being received.

In order, for a request with a body:
1. **API key** (`CRYPTOPRED_API_KEY`, when set): `X-API-Key: <key>` or
   `Authorization: Bearer <key>`, compared in constant time; otherwise 401.
2. **Rate limit** (`CRYPTOPRED_RATE_LIMIT_PER_MIN`, 0 = off): a token bucket per client
   (its API key when it sends one, else its address) holding `CRYPTOPRED_RATE_LIMIT_BURST`
   requests; an empty bucket answers 429 with `Retry-After` (seconds).
3. **Body cap** (`CRYPTOPRED_MAX_BODY_BYTES`): a `Content-Length` over it answers 413 at once;
   a body without one is counted while it arrives and answers 413 as soon as it passes the cap.
   The app then gets the body from memory, so it never reads past the cap.

The bucket is a dozen lines of arithmetic kept here rather than a library: the limiters on PyPI
either wrap a whole framework's routing (slowapi) or keep state in Redis, and this one must live
inside an ASGI middleware of one replica (each API replica limits on its own).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptopred_serving.settings import ServeSettings

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class Limits:
    """What the guard enforces; `api_key` None leaves the routes open, a rate of 0 unlimited."""

    max_body_bytes: int
    rate_limit_per_min: float
    rate_limit_burst: int
    api_key: str | None = None


class TokenBuckets:
    """A token bucket per client key: `burst` tokens, refilled at `rate_per_min` / 60 per s.

    At most `max_clients` buckets are kept (the least recently used go first), so a flood of
    addresses cannot grow the replica's memory."""

    def __init__(
        self,
        rate_per_min: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.rate_per_s = rate_per_min / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Take one token for `key`: 0.0 when granted, else the seconds until one is there."""
        now = self.clock()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate_per_s)
        wait_s = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait_s = (1.0 - tokens) / self.rate_per_s
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait_s


def limits_of(settings: ServeSettings) -> Limits:
    """The bounds `settings` ask for."""
    return Limits(
        max_body_bytes=settings.max_body_bytes,
        rate_limit_per_min=settings.rate_limit_per_min,
        rate_limit_burst=settings.rate_limit_burst,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
    )


_limits: Limits | None = None
_buckets: TokenBuckets | None = None


def guard_requests(limits: Limits | None) -> None:
    """Enforce `limits` in this process's `RequestGuard` (None: let everything through).

    Called by the replica: Serve may run an unpickled copy of the FastAPI app (and so of the
    middleware), while this module is one per process."""
    global _limits, _buckets
    _limits = limits
    _buckets = None
    if limits is not None and limits.rate_limit_per_min > 0:
        _buckets = TokenBuckets(limits.rate_limit_per_min, limits.rate_limit_burst)


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    """The API key a request presents (`X-API-Key`, or a bearer token), if any."""
    if b"x-api-key" in headers:
        return headers[b"x-api-key"].decode("latin-1").strip()
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def key_matches(presented: str | None, expected: str) -> bool:
    return presented is not None and hmac.compare_digest(
        presented.encode("utf-8", "surrogateescape"), expected.encode()
    )


def client_key(scope: dict[str, Any], presented: str | None) -> str:
    """Whom a request is counted against: its API key (hashed) or its address."""
    if presented:
        return "key:" + hashlib.sha256(presented.encode("utf-8", "surrogateescape")).hexdigest()
    client = scope.get("client")
    return "addr:" + (client[0] if client else "unknown")


class RequestGuard:
    """ASGI middleware applying the process's `Limits` (see the module's docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        limits = _limits
        if scope["type"] != "http" or limits is None or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        presented = presented_key(headers)
        if limits.api_key is not None and not key_matches(presented, limits.api_key):
            await _answer(
                send,
                401,
                "an API key is needed: send it as X-API-Key or Authorization: Bearer",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        buckets = _buckets
        if buckets is not None:
            wait_s = buckets.take(client_key(scope, presented))
            if wait_s > 0:
                retry_after = str(max(1, math.ceil(wait_s))).encode()
                await _answer(
                    send,
                    429,
                    f"rate limit of {limits.rate_limit_per_min:g} requests per minute "
                    "exceeded (CRYPTOPRED_RATE_LIMIT_PER_MIN)",
                    [(b"retry-after", retry_after)],
                )
                return
        too_big = f"request body over {limits.max_body_bytes} bytes (CRYPTOPRED_MAX_BODY_BYTES)"
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > limits.max_body_bytes:
            await _answer(send, 413, too_big)
            return
        body = await _read_body(receive, limits.max_body_bytes)
        if body is None:
            await _answer(send, 413, too_big)
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Any, max_bytes: int) -> bytes | None:
    """The whole body, or None as soon as it passes `max_bytes` (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: nothing to answer
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    """A `receive` that gives the app `body` in one message, then the server's own."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: dict[str, Any] = await receive()
        return message

    return replay


async def _answer(
    send: Any, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
