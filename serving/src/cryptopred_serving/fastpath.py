"""A shortcut for the hottest route: a fresh cached `GET /v1/predictions/{pair}`, answered
before FastAPI's routing, dependency solving and exception middleware.

Those cost about as much CPU as everything else in a cached answer. `CachedLatest` answers
only requests that FastAPI would answer with the same bytes: a GET of a served pair whose
query holds nothing but in-range `candle_seconds` / `horizon_seconds` integers, and whose
answer the backend holds fresh in its cache. Everything else (misses, errors, other routes)
goes on to FastAPI unchanged, so validation and error answers stay in one place.

The replica registers the lookup with `serve_cached(...)`: the FastAPI app (and so this
middleware) may be a copy unpickled by Serve, while this module is one per process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PREFIX = "/v1/predictions/"
CANDLE_SECONDS_MAX = 86_400  # the route's own Query(le=...) limits
HORIZON_SECONDS_MAX = 7 * 86_400
_LIMITS = {b"candle_seconds": CANDLE_SECONDS_MAX, b"horizon_seconds": HORIZON_SECONDS_MAX}

#: (pair as in the URL, candle_seconds, horizon_seconds) -> the cached answer, or None
Lookup = Callable[[str, int | None, int | None], bytes | None]
_lookup: Lookup | None = None


def serve_cached(lookup: Lookup | None) -> None:
    """Answer fresh cached latest predictions from `lookup` (None: stop)."""
    global _lookup
    _lookup = lookup


def latest_query(query_string: bytes) -> dict[str, int] | None:
    """`candle_seconds` / `horizon_seconds` of a plain query, each at most once and in the
    route's range; None for anything else (FastAPI then decides)."""
    found: dict[str, int] = {}
    for part in query_string.split(b"&") if query_string else ():
        name, equals, value = part.partition(b"=")
        limit = _LIMITS.get(name)
        if limit is None or not equals or not value.isdigit() or len(value) > 7:
            return None
        key = name.decode()
        if key in found or not 1 <= int(value) <= limit:
            return None
        found[key] = int(value)
    return found


def cached_answer(path: str, query_string: bytes) -> bytes | None:
    """The cached body for a GET of `path?query_string`, or None when FastAPI must answer."""
    if _lookup is None or not path.startswith(PREFIX) or path.endswith("/history"):
        return None
    query = latest_query(query_string)
    if query is None:
        return None
    pair = path[len(PREFIX) :]
    return _lookup(pair, query.get("candle_seconds"), query.get("horizon_seconds"))


class CachedLatest:
    """ASGI middleware: answers `cached_answer` hits itself, passes the rest on."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            body = cached_answer(scope["path"], scope.get("query_string", b""))
            if body is not None:
                headers = [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
