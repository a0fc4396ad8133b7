"""RequestGuard on a small ASGI app (no Ray): API key, rate limit and body cap of POSTs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from cryptopred_core.settings import SettingsError
from cryptopred_serving.guard import Limits, RequestGuard, TokenBuckets, guard_requests, limits_of
from cryptopred_serving.settings import ServeSettings, load_serve_settings, replica_settings_json

KEY = "k3y-for-tests"


class Recorder:
    """An ASGI app that answers with the body it read, and remembers being called."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer = json.dumps({"method": scope["method"], "bytes": len(body)}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def app() -> Iterator[Recorder]:
    yield Recorder()
    guard_requests(None)


def call(
    inner: Recorder,
    method: str,
    *,
    content: Any = None,
    headers: dict[str, str] | None = None,
    client: tuple[str, int] = ("10.0.0.1", 5000),
) -> httpx.Response:
    if content is not None and not isinstance(content, bytes):
        chunks = content

        async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
            for chunk in chunks:
                yield chunk

        content = streamed()

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=RequestGuard(inner), client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            return await http.request(method, "/v1/predict", content=content, headers=headers)

    return asyncio.run(go())


def limits(**changes: Any) -> Limits:
    base = {"max_body_bytes": 1000, "rate_limit_per_min": 0.0, "rate_limit_burst": 5}
    return Limits(**(base | changes))


def test_a_body_over_the_cap_is_413_and_never_reaches_the_app(app: Recorder) -> None:
    guard_requests(limits())
    resp = call(app, "POST", content=b"x" * 1001)  # with Content-Length
    assert resp.status_code == 413
    assert "1000 bytes" in resp.json()["detail"] and "CRYPTOPRED_MAX_BODY_BYTES" in resp.text
    assert app.calls == 0


def test_a_chunked_body_is_cut_when_it_passes_the_cap(app: Recorder) -> None:
    guard_requests(limits())
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it arrives
        for i in range(100):
            sent.append(i)
            yield b"y" * 300

    resp = call(app, "POST", content=chunks())
    assert resp.status_code == 413 and app.calls == 0
    assert len(sent) < 100  # the rest of the body was never asked for


def test_a_body_under_the_cap_reaches_the_app_whole(app: Recorder) -> None:
    guard_requests(limits())
    resp = call(app, "POST", content=iter([b"a" * 600, b"b" * 400]))
    assert resp.status_code == 200 and resp.json() == {"method": "POST", "bytes": 1000}


def test_gets_pass_untouched(app: Recorder) -> None:
    guard_requests(limits(api_key=KEY, rate_limit_per_min=1.0, rate_limit_burst=1))
    for _ in range(5):
        assert call(app, "GET").status_code == 200
    assert app.calls == 5


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": "wrong"}, 401),
        ({"Authorization": f"Basic {KEY}"}, 401),
        ({"X-API-Key": KEY}, 200),
        ({"Authorization": f"Bearer {KEY}"}, 200),
    ],
)
def test_posts_need_the_api_key_when_one_is_set(
    app: Recorder, headers: dict[str, str], status: int
) -> None:
    guard_requests(limits(api_key=KEY))
    resp = call(app, "POST", content=b"{}", headers=headers)
    assert resp.status_code == status
    if status == 401:
        assert "API key" in resp.json()["detail"] and app.calls == 0
        assert resp.headers["www-authenticate"] == "Bearer"


def test_without_a_key_posts_are_open(app: Recorder) -> None:
    guard_requests(limits())
    assert call(app, "POST", content=b"{}").status_code == 200


def test_a_client_over_its_rate_gets_429_with_retry_after(app: Recorder) -> None:
    guard_requests(limits(rate_limit_per_min=6.0, rate_limit_burst=3))
    codes = [call(app, "POST", content=b"{}").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    resp = call(app, "POST", content=b"{}")
    assert resp.status_code == 429 and resp.headers["retry-after"] == "10"  # 6 per minute
    assert "CRYPTOPRED_RATE_LIMIT_PER_MIN" in resp.json()["detail"]
    # another client has its own bucket; GETs are not counted
    assert call(app, "POST", content=b"{}", client=("10.0.0.2", 1)).status_code == 200
    assert call(app, "GET").status_code == 200
    assert app.calls == 5


def test_buckets_refill_at_the_rate_and_forget_the_least_recent_clients() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate_per_min=60.0, burst=2, clock=lambda: now[0], max_clients=2)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 1.0]
    now[0] = 0.5
    assert buckets.take("a") == pytest.approx(0.5)  # half a token back after 0.5 s
    now[0] = 2.0
    assert buckets.take("a") == 0.0
    buckets.take("b")
    buckets.take("c")  # three clients: "a" (least recent) is forgotten
    assert set(buckets._buckets) == {"b", "c"}


def test_settings_bound_requests_and_keep_the_key_secret() -> None:
    settings = ServeSettings(api_key=KEY, max_body_bytes=2048, rate_limit_per_min=0)
    assert KEY not in repr(settings)
    assert limits_of(settings) == Limits(2048, 0.0, 60, KEY)
    # the replicas get the key itself, not pydantic's mask
    assert json.loads(replica_settings_json(settings))["api_key"] == KEY
    assert limits_of(ServeSettings()).api_key is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_body_bytes", 10), ("max_rows_per_request", 0), ("rate_limit_per_min", -1)],
)
def test_a_bad_bound_fails_at_start_with_one_line(field: str, value: int) -> None:
    with pytest.raises(SettingsError) as failed:
        load_serve_settings(**{field: value})
    message = str(failed.value)
    assert "\n" not in message and f"CRYPTOPRED_{field.upper()}" in message
