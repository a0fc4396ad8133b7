"""The chart page and its data route on the real FastAPI app (no Ray, no DB: stand-ins), and
the page's script run in Node with stand-ins for the browser, Plotly and the API."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from cryptopred_serving.app import api
from cryptopred_serving.backend import Backend
from cryptopred_serving.champion_watch import Champion
from cryptopred_serving.settings import ServeSettings
from cryptopred_serving.ui import chart_page

CHAMPION = Champion(
    "BTC-USD-60s", "7", None, {"window_steps": "16", "horizon_seconds": "60,300,900"}
)


class ChartDb:
    """Stands in for PostgreSQL's answer to the chart query; records the horizon asked for."""

    def __init__(self) -> None:
        self.horizons: list[int | None] = []

    def run(self, fn: Any, pair: str, candle_seconds: int, limit: int, horizon: int | None) -> Any:
        self.horizons.append(horizon)
        candle = {"window_start_ms": 0, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5}
        return [candle], []


def api_routes(routes: list[Any] = api.routes) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from api_routes(route.original_router.routes)


@pytest.fixture
def served() -> Iterator[Any]:
    """A stand-in `PredictionAPI` replica behind the app's routes; yields its backend."""
    cls = next(r.endpoint._serve_cls for r in api_routes() if hasattr(r.endpoint, "_serve_cls"))
    replica = cls.__new__(cls)
    replica.settings = ServeSettings(pairs=["BTC/USD"], candle_seconds=[60])
    replica.backend = Backend(replica.settings, lambda p, c: CHAMPION, lambda c, rows: [])
    replica.backend.db = ChartDb()
    overridden = []
    for route in api_routes():  # Serve made `self` a dependency: the replica it runs in
        current = inspect.signature(route.endpoint).parameters["self"].default.dependency
        api.dependency_overrides[current] = lambda: replica
        overridden.append(current)
    yield replica.backend
    for call in overridden:
        api.dependency_overrides.pop(call, None)


def get(url: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            return await http.get(url)

    return asyncio.run(call())


def options(page: str) -> list[tuple[str, bool]]:
    """(value, selected) of each option of the horizon selector."""
    select = re.search(r'<select id="horizon">(.*?)</select>', page)
    assert select is not None
    return [(v, bool(s)) for v, s in re.findall(r'<option value="(\d+)"( selected)?>', select[1])]


def config(page: str) -> dict[str, Any]:
    found = re.search(r"const CONFIG = (\{.*?\});", page)
    assert found is not None
    value: dict[str, Any] = json.loads(found[1])
    return value


def test_the_selector_offers_the_champions_horizons_the_first_by_default() -> None:
    page = chart_page("BTC-USD", 60, (60, 300, 900))
    assert options(page) == [("60", True), ("300", False), ("900", False)]
    assert config(page)["horizon_seconds"] == 60
    chosen = chart_page("BTC-USD", 60, (60, 300, 900), 300)
    assert options(chosen) == [("60", False), ("300", True), ("900", False)]
    assert config(chosen)["horizon_seconds"] == 300


def test_without_a_champion_the_selector_is_empty_and_every_horizon_is_drawn() -> None:
    page = chart_page("BTC-USD", 60)
    assert options(page) == [] and config(page)["horizon_seconds"] is None


def test_the_page_route_keeps_the_horizon_of_its_query(served: Backend) -> None:
    resp = get("/ui/BTC-USD?horizon_seconds=300")
    assert resp.status_code == 200, resp.text
    assert ("300", True) in options(resp.text) and config(resp.text)["horizon_seconds"] == 300
    assert config(get("/ui/BTC-USD").text)["horizon_seconds"] == 60


@pytest.mark.parametrize("url", ["/ui/BTC-USD", "/v1/chart/BTC-USD"])
def test_a_horizon_the_champion_lacks_is_422_naming_the_field(served: Backend, url: str) -> None:
    resp = get(f"{url}?horizon_seconds=61")
    assert resp.status_code == 422, resp.text
    [detail] = resp.json()["detail"]
    assert detail["loc"] == ["query", "horizon_seconds"] and "[60, 300, 900]" in detail["msg"]


def test_the_chart_route_filters_one_horizon_and_names_the_served_version(
    served: Backend,
) -> None:
    one = get("/v1/chart/BTC-USD?horizon_seconds=300")
    assert one.status_code == 200, one.text
    assert one.json()["horizon_seconds"] == 300
    assert (one.json()["model_name"], one.json()["model_version"]) == ("BTC-USD-60s", "7")
    assert get("/v1/chart/BTC-USD").json()["horizon_seconds"] is None
    assert served.db.horizons == [300, None]  # type: ignore[attr-defined]


# Stand-ins for what the page's script uses: the DOM, the URL and history, Plotly and fetch.
_BROWSER = """
const elements = {};
const document = {getElementById: id => (elements[id] ??= {
  textContent: "", innerHTML: "", addEventListener(type, listener) { this.listener = listener; }})};
const window = {location: {href: "http://api/ui/BTC-USD"},
  history: {replaceState(state, title, url) { window.location.href = url; }}};
const drawn = [], fetched = [];
const Plotly = {react(id, traces) { drawn.push(traces); }};
async function fetch(url) {
  fetched.push(url);
  const body = url.startsWith("/v1/chart/") ? CHART : LIVE;
  return {ok: true, json: async () => body};
}
function setInterval() {}
"""

_REPORT = """
setTimeout(() => {
  const before = {live: elements.live.innerHTML, version: elements["live-version"].textContent};
  elements.horizon.listener({target: {value: "900"}});
  setTimeout(() => console.log(JSON.stringify({before, fetched, url: window.location.href,
    traces: drawn[0].map(t => [t.type, t.zorder ?? 0, t.name])})), 10);
}, 10);
"""


def run_page(live: list[dict[str, Any]], horizon_seconds: int = 300) -> dict[str, Any]:
    """The page's script run in Node: what it fetched and drew, its live block, and what a
    change of the selector to 900 s did."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    page = chart_page("BTC-USD", 60, (60, 300, 900), horizon_seconds)
    script = page.rsplit("<script>", 1)[1].split("</script>", 1)[0]
    chart = {
        "model_name": "BTC-USD-60s",
        "model_version": "7",
        "candles": [{"window_start_ms": 0, "open": 1, "high": 2, "low": 0.5, "close": 1.5}],
        "predictions": [
            {"target_ts_ms": 360_000, "predicted_close": 1.5, "lower": 1.0, "upper": 2.0}
        ],
    }
    data = f"const CHART = {json.dumps(chart)}; const LIVE = {json.dumps(live)};"
    done = subprocess.run(
        [node, "-e", data + _BROWSER + script + _REPORT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def live_row(horizon_seconds: int = 300, version: str = "7", **extra: Any) -> dict[str, Any]:
    return {
        "model_name": "BTC-USD-60s",
        "model_version": version,
        "horizon_seconds": horizon_seconds,
        "n": 57,
        "mae": 9.0,
        "persistence_mae": 10.0,
        "direction_accuracy": 0.5,
        "interval_coverage": 0.78,
        **extra,
    }


def test_the_script_draws_the_band_and_median_below_the_candles() -> None:
    report = run_page([])
    assert report["traces"] == [
        ["scatter", -1, "upper 300s"],
        ["scatter", -1, "80% interval 300s"],
        ["scatter", -1, "predicted median 300s"],
        ["candlestick", 0, "candles"],
    ]
    assert report["fetched"][:2] == [
        "/v1/chart/BTC-USD?candle_seconds=60&limit=240&horizon_seconds=300",
        "/v1/metrics/live?pair=BTC-USD&window=1h",
    ]


def test_choosing_a_horizon_keeps_it_in_the_url_and_redraws_it() -> None:
    report = run_page([])
    assert report["url"] == "http://api/ui/BTC-USD?horizon_seconds=900"
    assert report["fetched"][2].endswith("&horizon_seconds=900")


def test_the_live_block_shows_coverage_mae_skill_and_outcomes_of_the_served_version() -> None:
    others = [live_row(60, n=3), live_row(version="6", interval_coverage=0.1)]
    report = run_page([*others, live_row()])
    assert report["before"] == {
        "live": "<dt>80% coverage</dt><dd>78.0 %</dd>"
        "<dt>MAE skill vs persistence</dt><dd>0.100</dd><dt>outcomes</dt><dd>57</dd>",
        "version": "version 7 · 300 s",
    }


def test_the_live_block_prefers_the_pinball_skill_when_the_api_has_it() -> None:
    report = run_page([live_row(skill=0.042, pinball_loss=3.21)])
    assert report["before"]["live"] == (
        "<dt>80% coverage</dt><dd>78.0 %</dd><dt>pinball skill vs baseline</dt><dd>0.042</dd>"
        "<dt>pinball loss</dt><dd>3.210</dd><dt>outcomes</dt><dd>57</dd>"
    )


def test_the_live_block_says_when_there_are_no_outcomes_yet() -> None:
    for live in ([], [live_row(60), live_row(version="6")], [live_row(n=0)]):
        assert run_page(live)["before"]["live"] == "<dd>no outcomes yet</dd>"
