"""CachedLatest answers fresh cached latest predictions itself and passes everything else on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from cryptopred_serving import fastpath
from cryptopred_serving.backend import Backend
from cryptopred_serving.champion_watch import Champion
from cryptopred_serving.fastpath import CachedLatest, latest_query
from cryptopred_serving.settings import ServeSettings

CHAMPION = Champion("BTC-USD-60s", "3", None, {"window_steps": "16", "horizon_seconds": "60,300"})


class OneRowDb:
    """Stands in for PostgreSQL's answer to the latest-prediction query; counts reads."""

    def __init__(self) -> None:
        self.reads: list[tuple[Any, ...]] = []

    def run(self, fn: Any, *args: Any) -> dict[str, Any]:
        self.reads.append(args)
        pair, candle_seconds, horizon = args
        return {
            "pair": pair,
            "candle_seconds": candle_seconds,
            "horizon_seconds": horizon,
            "window_end_ms": 60_000,
            "target_ts_ms": 60_000 + horizon * 1000,
            "predicted_close": 100.5,
            "predicted_return": 0.005,
            "lower": 99.0,
            "upper": 102.0,
            "model_name": CHAMPION.name,
            "model_version": CHAMPION.version,
            "created_ms": 61_000,
        }


@pytest.fixture
def backend() -> Iterator[Backend]:
    settings = ServeSettings(pairs=["BTC/USD"], candle_seconds=[60], latest_cache_ms=60_000)
    champions = {("BTC/USD", 60): CHAMPION}
    backend = Backend(settings, lambda p, c: champions.get((p, c)), lambda c, rows: [])
    backend.db = OneRowDb()  # type: ignore[assignment]
    fastpath.serve_cached(backend.cached_latest)
    yield backend
    fastpath.serve_cached(None)


def call(path: str, query: bytes = b"", method: str = "GET") -> tuple[list[Any], bool]:
    """The messages the middleware sent and whether it passed the request on."""
    passed: list[bool] = []

    async def downstream(scope: Any, receive: Any, send: Any) -> None:
        passed.append(True)

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": method, "path": path, "query_string": query}
    asyncio.run(CachedLatest(downstream)(scope, receive, send))
    return sent, bool(passed)


@pytest.mark.parametrize(
    ("query", "parsed"),
    [
        (b"", {}),
        (b"candle_seconds=60", {"candle_seconds": 60}),
        (b"horizon_seconds=300&candle_seconds=60", {"candle_seconds": 60, "horizon_seconds": 300}),
        (b"candle_seconds=60&candle_seconds=300", None),  # repeated: FastAPI's call
        (b"candle_seconds=0", None),  # below the route's ge=1
        (b"candle_seconds=86401", None),  # above its le
        (b"horizon_seconds=604801", None),
        (b"candle_seconds=-60", None),
        (b"candle_seconds=6e1", None),
        (b"candle_seconds", None),
        (b"limit=5", None),
        (b"candle_seconds=60&", None),
    ],
)
def test_latest_query_reads_only_plain_in_range_integers(query, parsed) -> None:
    assert latest_query(query) == parsed


def test_a_fresh_cached_answer_is_sent_without_fastapi(backend: Backend) -> None:
    sent, passed = call("/v1/predictions/BTC-USD")
    assert passed  # nothing cached yet: the route reads the DB
    body = backend.latest(("BTC/USD", 60, 60))  # what the route caches on that miss
    sent, passed = call("/v1/predictions/BTC-USD")
    assert not passed
    assert sent[0]["status"] == 200
    assert dict(sent[0]["headers"]) == {
        b"content-length": str(len(body)).encode(),
        b"content-type": b"application/json",
    }
    assert sent[1]["body"] == body
    assert json.loads(body)["horizon_seconds"] == 60  # the champion's first horizon
    # an encoded BTC%2FUSD arrives decoded; the explicit defaults name the same cache entry
    assert call("/v1/predictions/BTC/USD", b"candle_seconds=60&horizon_seconds=60")[0] == sent
    assert len(backend.db.reads) == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path", "query", "method"),
    [
        ("/v1/predictions/BTC-USD", b"horizon_seconds=300", "GET"),  # not cached yet
        ("/v1/predictions/ETH-USD", b"", "GET"),  # unknown pair: FastAPI answers 404
        ("/v1/predictions/BTC-USD", b"candle_seconds=300", "GET"),  # not served: 422
        ("/v1/predictions/BTC-USD", b"horizon_seconds=120", "GET"),  # not a horizon: 422
        ("/v1/predictions/BTC-USD/history", b"", "GET"),
        ("/v1/predictions/BTC-USD", b"", "POST"),
        ("/v1/models", b"", "GET"),
    ],
)
def test_everything_else_goes_on_to_fastapi(backend: Backend, path, query, method) -> None:
    backend.latest(("BTC/USD", 60, 60))
    assert call(path, query, method) == ([], True)


def test_a_stale_answer_goes_on_to_fastapi(backend: Backend) -> None:
    backend.latest(("BTC/USD", 60, 60))
    backend.latest_cache_ms = 0
    assert call("/v1/predictions/BTC-USD") == ([], True)


def test_without_a_registered_lookup_everything_goes_on(backend: Backend) -> None:
    backend.latest(("BTC/USD", 60, 60))
    fastpath.serve_cached(None)
    assert call("/v1/predictions/BTC-USD") == ([], True)
