"""The API's request bounds over real HTTP (HAProxy, Ray Serve): API key, body and rows caps,
rate limit, and GETs that keep answering while the largest allowed bodies arrive."""

import json
import socket
import statistics
import threading
import time

import httpx
import pytest

from cryptopred_testsupport.serving import rows_of

pytestmark = pytest.mark.integration

PAIR = "HBD/USD"
KEY = "integration-test-key"
BURST = 40


@pytest.fixture(scope="module")
def api(postgres, mlflow_server, ray_session):
    from ray import serve

    from cryptopred_core.ports import free_port
    from cryptopred_serving.app import build_app

    settings = {
        "database_url": postgres.db_url,
        "mlflow_tracking_uri": mlflow_server.mlflow_uri,
        "pairs": [PAIR],
        "candle_seconds": [60],
        "publisher_enabled": False,
        "api_key": KEY,
        "rate_limit_per_min": 60,
        "rate_limit_burst": BURST,
    }
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(settings), name="bounds-test", route_prefix="/")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client, port
    finally:
        serve.delete("bounds-test")
        serve.shutdown()


def indicator_rows(n):
    from cryptopred_training.synthetic import synthetic_indicator_frame

    frame = synthetic_indicator_frame(n, pair=PAIR, seed=5)
    return [{k: getattr(r, k) for k in r.__struct_fields__} for r in rows_of(frame)]


def test_posts_need_the_key_and_gets_do_not(api):
    client, _ = api
    assert client.get("/healthz").status_code == 200
    body = {"pair": PAIR, "rows": []}
    missing = client.post("/v1/predict", json=body)
    assert missing.status_code == 401 and "API key" in missing.json()["detail"]
    assert client.post("/v1/predict", json=body, headers={"X-API-Key": "nope"}).status_code == 401
    with_key = client.post("/v1/predict", json=body, headers={"X-API-Key": KEY})
    # past the guard: the app itself answers (no model is registered in this module)
    assert with_key.status_code == 503 and "champion" in with_key.text


def test_a_huge_body_is_refused_before_it_is_sent(api):
    """The 413 comes back while the client has sent only the headers and 1 KiB of a
    declared 38 MB body."""
    _, port = api
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"X-API-Key: {KEY}\r\nContent-Type: application/json\r\n".encode()
            + b"Content-Length: 38000000\r\n\r\n"
            + b"[" * 1024
        )
        answer = read_answer(sock)
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "CRYPTOPRED_MAX_BODY_BYTES" in answer


def test_too_many_rows_are_422_naming_rows(api):
    client, _ = api
    rows = indicator_rows(1001)
    resp = client.post("/v1/predict", json={"pair": PAIR, "rows": rows}, headers={"X-API-Key": KEY})
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"][0]
    assert detail["loc"] == ["body", "rows"] and "at most 1000 rows" in detail["msg"]


def test_the_largest_bodies_do_not_hold_up_gets(api):
    """GET latency alone, then while bodies just under the cap (1 MiB) and a slow one keep
    arriving: the median may grow with the shared CPU, not by the bodies' parse time."""
    client, port = api
    rows = indicator_rows(1000)
    big = json.dumps({"pair": PAIR, "rows": rows * 3})  # parsed, then over the rows cap
    assert len(big) > 1_048_576
    while len(big) > 1_048_576:  # the most rows that fit under the cap, still valid JSON
        rows = rows[: len(rows) * 9 // 10]
        big = json.dumps({"pair": PAIR, "rows": rows * 3})
    assert len(big) > 700_000

    def latencies(n):
        out = []
        for _ in range(n):
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            out.append(time.perf_counter() - started)
        return out

    latencies(5)
    alone = statistics.median(latencies(40))
    stop = threading.Event()
    sent = []

    def post_big():
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as poster:
            while not stop.is_set() and len(sent) < BURST // 2:
                resp = poster.post(
                    "/v1/predict",
                    content=big,
                    headers={"X-API-Key": KEY, "Content-Type": "application/json"},
                )
                sent.append(resp.status_code)

    def trickle():  # a slow client: a body under the cap, one byte every 50 ms
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n"
                + f"X-API-Key: {KEY}\r\nContent-Length: 100000\r\n\r\n".encode()
            )
            while not stop.wait(0.05):
                sock.sendall(b" ")

    threads = [threading.Thread(target=post_big), threading.Thread(target=trickle)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        during = statistics.median(latencies(40))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    print(
        f"GET /healthz median: alone {alone * 1000:.1f} ms, "
        f"during big bodies {during * 1000:.1f} ms"
    )
    assert sent and all(code in (413, 422) for code in sent), sent
    assert during < 5 * alone + 0.05


def test_a_client_over_its_rate_gets_429(api):
    client, _ = api
    codes = [
        client.post("/v1/predict", json={"pair": PAIR}, headers={"X-API-Key": KEY}).status_code
        for _ in range(BURST + 5)
    ]
    assert 429 in codes
    limited = client.post("/v1/predict", json={"pair": PAIR}, headers={"X-API-Key": KEY})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert client.get("/healthz").status_code == 200


def read_answer(sock):
    """One HTTP/1.1 answer with a Content-Length, read whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return (head + b"\r\n\r\n" + body).decode(errors="replace")
