"""The Serve app on real Ray Serve, MLflow, tansu and PostgreSQL: API, publisher, outcomes,
hot swap. One deployment is shared by the tests of this module (Serve starts slowly here)."""

import threading
import time

import httpx
import psutil
import pytest

from cryptopred.stack.parts import Broker
from cryptopred_core import topics
from cryptopred_core.db import connect, fetch_all, upsert
from cryptopred_core.kafka import ensure_topics, make_producer
from cryptopred_core.ports import free_port
from cryptopred_core.records import encode
from cryptopred_testsupport.serving import read_topic, rows_of, train_and_register, wait_for

pytestmark = pytest.mark.integration

PAIR = "SVA/USD"
NAME = "SVA-USD-60s"
HISTORY_ROWS = 400  # in the DB before the app starts
LIVE_ROWS = 40  # streamed to the publisher afterwards


def as_json(row):
    return {k: getattr(row, k) for k in row.__struct_fields__}


@pytest.fixture(scope="module")
def served(postgres, mlflow_server, ray_session, tmp_path_factory):
    from ray import serve

    from cryptopred_serving.app import build_app
    from cryptopred_training.synthetic import synthetic_indicator_frame

    frame = synthetic_indicator_frame(HISTORY_ROWS + LIVE_ROWS, pair=PAIR, seed=3)
    rows = rows_of(frame)
    with connect(postgres.db_url) as conn:
        upsert(conn, "technical_indicators", rows[:HISTORY_ROWS], "postgres")
    version = train_and_register(
        mlflow_server.mlflow_uri, frame.iloc[:HISTORY_ROWS], seed=0, pair=PAIR
    )

    base = postgres.model_copy(
        update={
            "data_dir": tmp_path_factory.mktemp("srv"),
            "broker_port": free_port(),
            "kafka_bootstrap": None,
        }
    )
    broker = Broker(base)
    broker.start()
    client = None
    try:  # a failed deploy must not leave the broker running
        settings = {
            "kafka_bootstrap": broker.address,
            "database_url": postgres.db_url,
            "mlflow_tracking_uri": mlflow_server.mlflow_uri,
            "pairs": [PAIR],
            "candle_seconds": [60],
            "model_poll_s": 1.0,
            "latest_cache_ms": 0,
            "publisher_group": "srv-publisher",
            # one client sends POSTs back to back while a champion is promoted (as the
            # benchmark does); the rate limit has its own test (test_http_bounds)
            "rate_limit_per_min": 0,
        }
        kafka = base.model_copy(update={"kafka_bootstrap": broker.address})
        ensure_topics(kafka, topics.ALL_TOPICS)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(settings), name="cryptopred-test", route_prefix="/")
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        yield {
            "client": client,
            "rows": rows,
            "version": version,
            "frame": frame,
            "kafka": kafka,
            "db_url": postgres.db_url,
            "mlflow_uri": mlflow_server.mlflow_uri,
            "port": port,
        }
    finally:
        if client is not None:
            client.close()
        serve.delete("cryptopred-test")
        serve.shutdown()  # the next module starts Serve on its own port
        broker.stop()


def test_health_docs_and_models(served):
    c = served["client"]
    assert c.get("/healthz").json()["status"] == "ok"
    assert c.get("/docs").status_code == 200
    assert "/v1/predict" in c.get("/openapi.json").json()["paths"]
    wait_for(lambda: c.get("/v1/models").json()[0]["version"] is not None, 60)
    model = c.get("/v1/models").json()[0]
    assert model["name"] == NAME and model["version"] == served["version"]
    assert model["alias"] == "champion" and model["window_steps"] == 16
    assert model["horizon_seconds"] == [60, 300, 900]
    assert model["trained_to_ms"] > model["trained_from_ms"]
    assert any(k.startswith("test_") for k in model["test_metrics"])


def test_the_http_port_is_haproxy_forwarding_to_the_api_replica(served):
    """The default ingress (CRYPTOPRED_SERVE_INGRESS=haproxy): HAProxy, not a Python proxy,
    listens on the Serve port, and answers come from the API replica behind it."""
    listening = [
        conn
        for conn in psutil.net_connections("tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == served["port"]
    ]
    assert listening, "nothing listens on the Serve port"
    assert {psutil.Process(conn.pid).name() for conn in listening} == {"haproxy"}
    assert served["client"].get("/healthz").json()["pairs"] == ["SVA-USD"]


def test_predict_uses_the_latest_rows_or_an_explicit_window(served):
    c = served["client"]
    resp = c.post("/v1/predict", json={"pair": PAIR, "candle_seconds": 60})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_version"] == served["version"]
    last = served["rows"][HISTORY_ROWS - 1]
    assert body["window_end_ms"] == last.window_end_ms
    assert [f["horizon_seconds"] for f in body["forecasts"]] == [60, 300, 900]
    for f in body["forecasts"]:
        assert f["lower"] <= f["predicted_close"] <= f["upper"]
        assert f["target_ts_ms"] == last.window_end_ms + f["horizon_seconds"] * 1000
    window = [as_json(r) for r in served["rows"][HISTORY_ROWS - 16 : HISTORY_ROWS]]
    explicit = c.post("/v1/predict", json={"pair": "SVA-USD", "rows": window})
    assert explicit.status_code == 200, explicit.text
    assert explicit.json()["forecasts"] == body["forecasts"]


@pytest.mark.parametrize(
    ("method", "url", "payload", "status", "words"),
    [
        ("get", "/v1/predictions/DOGE-USD", None, 404, "unknown pair"),
        ("get", "/v1/predictions/nonsense", None, 404, "unknown pair"),
        ("get", "/v1/predictions/SVA-USD?candle_seconds=0", None, 422, "candle_seconds"),
        ("get", "/v1/predictions/SVA-USD?candle_seconds=300", None, 422, "candle_seconds"),
        ("get", "/v1/predictions/SVA-USD?horizon_seconds=61", None, 422, "horizon_seconds"),
        ("get", "/v1/predictions/SVA-USD/history?limit=0", None, 422, "limit"),
        ("get", "/v1/metrics/live?pair=SVA-USD&window=forever", None, 422, "window"),
        ("get", "/v1/chart/SVA-USD?horizon_seconds=61", None, 422, "horizon_seconds"),
        ("get", "/ui/SVA-USD?horizon_seconds=61", None, 422, "horizon_seconds"),
        ("post", "/v1/predict", {"pair": PAIR, "candle_seconds": "x"}, 422, "candle_seconds"),
        ("post", "/v1/predict", {"candle_seconds": 60}, 422, "pair"),
        ("post", "/v1/predict", {"pair": "XRP/EUR"}, 404, "unknown pair"),
    ],
)
def test_client_errors_are_4xx_naming_the_field(served, method, url, payload, status, words):
    c = served["client"]
    resp = c.get(url) if method == "get" else c.post(url, json=payload)
    assert resp.status_code == status, resp.text
    assert words in resp.text


def test_a_too_short_window_names_the_required_length(served):
    rows = [as_json(r) for r in served["rows"][:5]]
    resp = served["client"].post("/v1/predict", json={"pair": PAIR, "rows": rows})
    assert resp.status_code == 422
    detail = resp.json()["detail"][0]
    assert detail["loc"] == ["body", "rows"] and "need at least 16" in detail["msg"]


def test_publisher_predicts_each_final_row_into_kafka_and_db_and_scores_outcomes(served):
    producer = make_producer(served["kafka"])
    for row in served["rows"][HISTORY_ROWS:]:
        producer.produce(topics.TECHNICAL_INDICATORS, key=PAIR.encode(), value=encode(row))
    assert producer.flush(30) == 0
    conn = connect(served["db_url"], autocommit=True)

    def count():
        return fetch_all(conn, "SELECT count(*) AS n FROM predictions WHERE pair = %s", (PAIR,))[0][
            "n"
        ]

    wait_for(lambda: count() == LIVE_ROWS * 3, 120)
    in_kafka = read_topic(served["kafka"], topics.PREDICTIONS)
    keys = {(p.window_end_ms, p.horizon_seconds, p.model_version) for p in in_kafka}
    assert len(in_kafka) == len(keys) == LIVE_ROWS * 3  # equal counts, no duplicates

    # each 60 s prediction whose target candle arrived has an outcome matching a hand check
    closes = {r.window_end_ms: r.close for r in served["rows"]}
    outcomes = fetch_all(
        conn,
        "SELECT * FROM prediction_outcomes WHERE pair = %s AND "
        "horizon_seconds = 60 ORDER BY window_end_ms",
        (PAIR,),
    )
    assert len(outcomes) == LIVE_ROWS - 1
    by_key = {(p.window_end_ms, p.horizon_seconds): p for p in in_kafka}
    for o in outcomes:
        p = by_key[(o["window_end_ms"], 60)]
        actual = closes[p.target_ts_ms]
        base = closes[p.window_end_ms]
        assert o["actual_close"] == actual and o["base_close"] == base
        assert o["abs_error"] == pytest.approx(abs(p.predicted_close - actual))
        assert o["persistence_abs_error"] == pytest.approx(abs(base - actual))
        assert o["direction_hit"] == ((p.predicted_close > base) == (actual > base))
        assert o["interval_hit"] == (p.lower <= actual <= p.upper)

    latest = served["client"].get("/v1/predictions/SVA-USD", params={"horizon_seconds": 300})
    assert latest.status_code == 200
    assert latest.json()["window_end_ms"] == served["rows"][-1].window_end_ms
    history = served["client"].get("/v1/predictions/BTC%2FUSD/history")
    assert history.status_code == 404  # not a served pair
    history = served["client"].get("/v1/predictions/SVA%2FUSD/history", params={"limit": 5})
    assert history.status_code == 200 and len(history.json()) == 5
    live = served["client"].get("/v1/metrics/live", params={"pair": "SVA-USD", "window": "3650d"})
    assert live.status_code == 200
    sixty = [m for m in live.json() if m["horizon_seconds"] == 60]
    assert sixty and sixty[0]["n"] == LIVE_ROWS - 1
    assert sixty[0]["mae"] == pytest.approx(sum(o["abs_error"] for o in outcomes) / len(outcomes))
    chart = served["client"].get("/v1/chart/SVA-USD", params={"horizon_seconds": 300})
    assert chart.status_code == 200, chart.text
    assert [p["horizon_seconds"] for p in chart.json()["predictions"]] == [300] * LIVE_ROWS
    assert chart.json()["model_version"] == served["version"]
    pinball = sum(o["pinball_loss"] for o in outcomes) / len(outcomes)
    assert sixty[0]["pinball_loss"] == pytest.approx(pinball)
    # every run registers its best baseline (alias `baseline`): outcomes carry its loss too
    paired = [o for o in outcomes if o["baseline_pinball_loss"] is not None]
    assert sixty[0]["baseline_n"] == len(paired) == len(outcomes)
    mine = sum(o["pinball_loss"] for o in paired)
    theirs = sum(o["baseline_pinball_loss"] for o in paired)
    assert sixty[0]["skill"] == pytest.approx(1 - mine / theirs)
    conn.close()


def test_promoting_a_new_champion_fails_no_request(served):
    c = served["client"]
    failures, versions = [], []
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            resp = c.post("/v1/predict", json={"pair": PAIR})
            if resp.status_code != 200:
                failures.append(resp.status_code)
            else:
                versions.append(resp.json()["model_version"])

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    time.sleep(2)
    new_version = train_and_register(
        served["mlflow_uri"], served["frame"].iloc[:HISTORY_ROWS], seed=1, pair=PAIR
    )
    assert new_version != served["version"]
    wait_for(lambda: versions and versions[-1] == new_version, 90)
    time.sleep(1)
    stop.set()
    worker.join(30)
    assert failures == []
    assert served["version"] in versions and versions[-1] == new_version


def test_the_chart_page_renders_in_headless_chromium(served, tmp_path):
    import shutil
    import subprocess

    from PIL import Image, ImageStat

    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("Debian package chromium is not installed (.ci/run installs it)")
    url = f"{served['client'].base_url}/ui/SVA-USD?horizon_seconds=300"
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,800",
        "--virtual-time-budget=10000",
    ]
    dom = subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    assert "SVA/USD" in dom
    assert "main-svg" in dom  # plotly drew its SVG: the bundled script ran, no CDN needed
    assert '<option value="300" selected="">300 s</option>' in dom
    # the live block was filled from /v1/metrics/live (this version has no outcomes)
    assert '<dl id="live"><dd>no outcomes yet</dd></dl>' in dom
    shot = tmp_path / "ui.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True
    )
    image = Image.open(shot).convert("L")
    stat = ImageStat.Stat(image)
    assert image.size == (1200, 800)
    assert stat.stddev[0] > 5  # not a blank page
    assert len(image.getcolors(maxcolors=1 << 16) or []) > 20


def test_fuzzing_the_openapi_finds_no_server_error(served):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation import GenerationMode

    base_url = str(served["client"].base_url)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    errors = []

    def fuzz(operation, mode):
        @settings(
            max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def probe(case):
            response = case.call(base_url=base_url, timeout=30)
            if response.status_code >= 500:
                errors.append(
                    (
                        operation.method,
                        case.formatted_path,
                        case.query,
                        response.status_code,
                        response.text[:200],
                    )
                )

        try:
            probe()
        except Unsatisfiable:
            # no invalid input exists (e.g. GET /healthz has no parameters)
            assert mode == GenerationMode.NEGATIVE

    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/ui/plotly.min.js":
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode)
    assert errors == []


def test_a_baseline_champion_serves_forecasts_with_intervals(served):
    """When the gate serves the best volatility baseline, the API answers with it (no 503)
    and says so in /v1/models."""
    from mlflow import MlflowClient

    c = served["client"]
    client = MlflowClient(tracking_uri=served["mlflow_uri"])
    baseline = client.get_model_version_by_alias(NAME, "baseline")
    client.set_registered_model_alias(NAME, "champion", baseline.version)

    def served_by_baseline():  # live predictions: the stored ones wait for a new candle
        resp = c.post("/v1/predict", json={"pair": PAIR})
        return resp.status_code == 200 and resp.json()["model_version"] == baseline.version

    wait_for(served_by_baseline, 60, "the baseline champion's prediction")
    answer = c.post("/v1/predict", json={"pair": PAIR})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == baseline.version
    forecasts = answer.json()["forecasts"]
    assert len(forecasts) == 3
    assert all(f["lower"] < f["predicted_close"] < f["upper"] for f in forecasts)
    model = c.get("/v1/models").json()[0]
    assert model["version"] == baseline.version and model["model_kind"] == "baseline"
    assert model["baseline"] in ("empirical", "ewma", "garch") and model["reason"]
    assert model["window_steps"] == 64
