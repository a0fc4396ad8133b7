"""The Ray Serve application: ingress `PredictionAPI`, `ModelServer`, `PredictionPublisher`.

(No `from __future__ import annotations` here: FastAPI must resolve the route types at runtime.)

`build_app(args)` composes them with `bind()`; it is the import path of the serve YAML
(`cryptopred_serving.app:build_app`) and of the RayService. Knobs reach running replicas
through `user_config` (`reconfigure`).
"""

import asyncio
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle as _Handle

from cryptopred_core.pipeline.runner import StageRunner
from cryptopred_core.pipeline.writer import DbWriter
from cryptopred_core.raycluster import serve_grpc_on_node_address
from cryptopred_serving.backend import Backend, ClientError
from cryptopred_serving.bodies import predict_body_openapi, read_predict
from cryptopred_serving.calibration import CalibrationMonitor, policy_of
from cryptopred_serving.champion_watch import Champion, ChampionWatcher
from cryptopred_serving.demoter import Demoter
from cryptopred_serving.fastpath import (
    CANDLE_SECONDS_MAX,
    HORIZON_SECONDS_MAX,
    CachedLatest,
    serve_cached,
)
from cryptopred_serving.guard import RequestGuard, guard_requests, limits_of
from cryptopred_serving.local_models import LocalModels, load_from_mlflow, one_torch_thread
from cryptopred_serving.pairs import pair_to_url
from cryptopred_serving.publisher import PublisherStage, published_tail
from cryptopred_serving.schemas import (
    LiveMetric,
    ModelOut,
    PredictionOut,
    PredictRequest,
    PredictResponse,
)
from cryptopred_serving.settings import ServeSettings, replica_settings_json
from cryptopred_serving.singleflight import SingleFlight
from cryptopred_serving.ui import chart_page, plotly_js

Handle = _Handle[Any]

api = FastAPI(
    title="cryptopred",
    description="Real-time crypto price forecasts: latest predictions, on-demand predictions, "
    "live accuracy and a chart page.",
    version="0.1.0",
)
# fresh cached `GET /v1/predictions/{pair}` answers skip FastAPI's routing (see fastpath)
api.add_middleware(CachedLatest)
# bounds on POSTs (API key, rate limit, body cap) before their bodies are read (see guard)
api.add_middleware(RequestGuard)


@api.exception_handler(ClientError)
async def _client_error(request: Request, exc: ClientError) -> JSONResponse:
    return JSONResponse(status_code=exc.status, content=exc.body())


def _model_of(handle: Handle, champion: Champion) -> Handle:
    """The model server handle routed to the replica that holds the champion's version.

    Calls go over Serve's inter-deployment gRPC (`_by_reference=False`) instead of Ray actor
    tasks and object refs: about 30 % less CPU per call on both sides (9.5 instead of 13.5 ms
    per explicit-rows `POST` when the API still called the model server, on the 2-core
    machine); nothing here needs an ObjectRef.
    """
    return handle.options(multiplexed_model_id=champion.model_id, _by_reference=False)


def _call_model(handle: Handle, champion: Champion, rows: list[dict[str, Any]]) -> Any:
    """Blocking model call from a worker thread (never from the event loop)."""
    return _model_of(handle, champion).predict.remote(rows).result(timeout_s=60)


@serve.deployment(ray_actor_options={"num_cpus": 0.2}, max_ongoing_requests=32)
class ModelServer:
    """The publisher's model calls: loads registered model versions from MLflow, several per
    replica (multiplexed by `<name>/<version>`), and predicts off the event loop."""

    def __init__(self, tracking_uri: str) -> None:
        serve_grpc_on_node_address()
        # one 16-row window is far too small to split: a second intra-op thread only spins
        one_torch_thread()
        self._load = load_from_mlflow(tracking_uri)

    @serve.multiplexed(max_num_models_per_replica=16)  # type: ignore[untyped-decorator]
    async def get_model(self, model_id: str) -> Any:
        name, version = model_id.rsplit("/", 1)
        return await asyncio.to_thread(self._load, Champion(name, version, None))

    async def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        predictor = await self.get_model(serve.get_multiplexed_model_id())
        return await asyncio.to_thread(_predict, predictor, rows)

    async def warm(self) -> bool:
        await self.get_model(serve.get_multiplexed_model_id())
        return True


def _predict(predictor: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    one_torch_thread()  # in this worker thread too, not only where the replica started
    return list(predictor.predict_records(rows))


def _watcher(settings: ServeSettings, warm: Callable[[Champion], Any]) -> ChampionWatcher:
    """Follows the champion aliases; `warm` loads a new version before traffic switches."""
    return ChampionWatcher(
        settings.mlflow_uri, settings.pairs, settings.candle_seconds, settings.model_poll_s, warm
    )


@serve.deployment(ray_actor_options={"num_cpus": 0.2}, health_check_period_s=5)
class PredictionPublisher:
    """Consumes final indicator rows in a thread, predicts, publishes to Kafka and the DB."""

    def __init__(self, models: Handle, settings_json: str) -> None:
        serve_grpc_on_node_address()
        self.settings = ServeSettings.model_validate_json(settings_json)
        self.watcher = _watcher(
            self.settings,
            lambda champion: _model_of(models, champion).warm.remote().result(timeout_s=120),
        )
        self.stop = threading.Event()
        monitor = CalibrationMonitor(policy_of(self.settings))
        self.demoter = Demoter(self.settings.mlflow_uri, monitor)
        self.stage = stage = PublisherStage(
            self.settings.db_url,
            {(p, c) for p in self.settings.pairs for c in self.settings.candle_seconds},
            self.watcher.get,
            lambda champion, rows: _call_model(models, champion, rows),
            published=lambda: published_tail(self.settings),
            max_age_ms=(
                None
                if self.settings.publisher_max_age_s is None
                else int(self.settings.publisher_max_age_s * 1000)
            ),
            baseline_of=self.watcher.baseline,
            monitor=monitor if self.settings.demotion_enabled else None,
            demote=self.demoter,
        )
        self.runner = StageRunner(
            self.settings,
            stage,
            self.settings.publisher_group,
            writer=DbWriter(self.settings.db_url, self.settings.db_dialect, stop=self.stop),
            batch_size=500,
        )
        self.stuck_after_s = 120.0
        self._beat = time.monotonic()
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            # rows consumed before the champions are known would be skipped for good
            while not self.stop.is_set() and not self.watcher.ready.wait(0.5):
                self._beat = time.monotonic()  # waiting for the registry is not being stuck
            while not self.stop.is_set():
                self.runner.step()
                self._beat = time.monotonic()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.runner.close()
            self.stage.close()
            self.demoter.close()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        if "model_poll_s" in user_config:
            self.watcher.poll_s = float(user_config["model_poll_s"])
        if "stuck_after_s" in user_config:
            self.stuck_after_s = float(user_config["stuck_after_s"])

    def check_health(self) -> None:
        """Fails (so Serve replaces the replica) when the consume loop died or is stuck."""
        if self.error is not None or not self.thread.is_alive():
            raise RuntimeError(f"publisher loop ended: {self.error}")
        if time.monotonic() - self._beat > self.stuck_after_s:
            raise RuntimeError(f"publisher loop stuck for more than {self.stuck_after_s:.0f} s")

    def stats(self) -> dict[str, Any]:
        return {
            **self.runner.stats.as_dict(),
            "skipped_no_champion": self.stage.skipped_no_champion,
            "skipped_done": self.stage.skipped_done,
            "reused_published": self.stage.reused_published,
            "demotions": [d.reason for d in self.stage.demotions],
            "error": self.error,
        }

    def __del__(self) -> None:
        self.stop.set()


# Serve's default of 5 requests per replica makes the proxy reject, back off and retry above a
# few dozen requests/s (throughput then collapses); the routes are short and mostly answered
# from memory on the event loop, so the replica takes up to 100 and queues them itself.
# Like every deployment option, a serve config file (`max_ongoing_requests`) overrides it.
@serve.deployment(ray_actor_options={"num_cpus": 0.2}, max_ongoing_requests=100)
@serve.ingress(api)
class PredictionAPI:
    """The HTTP API. It predicts with its own copy of each champion (`LocalModels`, loaded
    before traffic switches to it); blocking DB reads and predictions run in worker threads."""

    def __init__(self, publisher: Handle | None, settings_json: str) -> None:
        serve_grpc_on_node_address()
        one_torch_thread()  # as in the model server: a 16-row window is not worth two
        self.settings = ServeSettings.model_validate_json(settings_json)
        self.publisher = publisher
        self.local = LocalModels(load_from_mlflow(self.settings.mlflow_uri), one_torch_thread)
        self.watcher = _watcher(self.settings, self.local.load)
        self.backend = Backend(self.settings, self.watcher.get, self.local.predict)
        # cache misses of the hot routes: one DB read (or model call) per key at a time
        self.flights: SingleFlight[tuple[Any, ...], bytes | None] = SingleFlight()
        serve_cached(self.backend.cached_latest)
        guard_requests(limits_of(self.settings))

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        if "model_poll_s" in user_config:
            self.watcher.poll_s = float(user_config["model_poll_s"])
        if "latest_cache_ms" in user_config:
            self.backend.latest_cache_ms = int(user_config["latest_cache_ms"])

    @api.get("/healthz")
    def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "pairs": [pair_to_url(p) for p in self.settings.pairs]}

    @api.get("/v1/models", response_model=list[ModelOut])
    def models(self) -> list[dict[str, Any]]:
        return self.backend.models()

    # `{pair:path}` also takes an encoded `BTC%2FUSD` (decoded to `BTC/USD` before routing);
    # so the history route comes before the latest one, which would otherwise swallow it
    @api.get("/v1/predictions/{pair:path}/history", response_model=list[PredictionOut])
    def history(
        self,
        pair: str,
        candle_seconds: int | None = Query(None, ge=1, le=CANDLE_SECONDS_MAX),
        limit: int = Query(100, ge=1, le=10_000),
    ) -> list[dict[str, Any]]:
        p = self.backend.pair(pair)
        return self.backend.history(p, self.backend.candle_seconds(candle_seconds), limit)

    # the two hot routes run on the event loop and answer from the backend's caches there;
    # only a cache miss goes to a worker thread, once per key however many requests wait
    @api.get("/v1/predictions/{pair:path}", response_model=PredictionOut)
    async def latest(
        self,
        pair: str,
        candle_seconds: int | None = Query(None, ge=1, le=CANDLE_SECONDS_MAX),
        horizon_seconds: int | None = Query(None, ge=1, le=HORIZON_SECONDS_MAX),
    ) -> Response:
        # a fresh cached answer has usually gone out from CachedLatest before this runs
        key = self.backend.latest_key(pair, candle_seconds, horizon_seconds)
        body = self.backend.latest(key, read=False)
        if body is None:
            body = await self.flights.run(("latest", *key), partial(self.backend.latest, key))
        return Response(body, media_type="application/json")

    # the body is read by `read_predict` (bounded steps on the loop), not by FastAPI
    @api.post("/v1/predict", response_model=PredictResponse, openapi_extra=predict_body_openapi())
    async def predict(self, request: Request) -> Response:
        body = await read_predict(request, self.settings.max_rows_per_request)
        p = self.backend.pair(body.pair, loc=("body", "pair"))
        width = self.backend.candle_seconds(body.candle_seconds)
        if body.rows is not None:  # windowed and predicted in a worker thread
            made = await asyncio.to_thread(self._predict_rows, p, width, body)
            return Response(made, media_type="application/json")
        answer = self.backend.cached_prediction(p, width)
        if answer is None:
            answer = await self.flights.run(
                ("predict", p, width), partial(self.backend.predict_latest, p, width)
            )
        return Response(answer, media_type="application/json")

    def _predict_rows(self, pair: str, candle_seconds: int, body: PredictRequest) -> bytes:
        """The answer to a request with its own rows (blocking: the model runs here)."""
        rows = [r.model_dump() for r in body.rows or ()]
        champion, window = self.backend.explicit_window(pair, candle_seconds, rows)
        forecasts = self.local.predict(champion, window)
        return self.backend.answer(pair, candle_seconds, champion, forecasts)

    @api.get("/v1/metrics/live", response_model=list[LiveMetric])
    def live(
        self,
        pair: str = Query(..., min_length=3, max_length=21),
        window: str = Query("1h", max_length=8),
    ) -> list[dict[str, Any]]:
        return self.backend.live(self.backend.pair(pair, loc=("query", "pair")), window)

    @api.get("/v1/chart/{pair:path}")
    def chart(
        self,
        pair: str,
        candle_seconds: int | None = Query(None, ge=1, le=CANDLE_SECONDS_MAX),
        limit: int = Query(240, ge=1, le=5000),
        horizon_seconds: int | None = Query(None, ge=1, le=HORIZON_SECONDS_MAX),
    ) -> dict[str, Any]:
        p = self.backend.pair(pair)
        width = self.backend.candle_seconds(candle_seconds)
        return self.backend.chart(p, width, limit, horizon_seconds)

    @api.get("/ui/plotly.min.js")
    def plotly(self) -> Response:
        return Response(plotly_js(), media_type="application/javascript")

    @api.get("/ui/{pair:path}", response_class=HTMLResponse)
    def ui(
        self,
        pair: str,
        candle_seconds: int | None = Query(None, ge=1, le=CANDLE_SECONDS_MAX),
        horizon_seconds: int | None = Query(None, ge=1, le=HORIZON_SECONDS_MAX),
    ) -> str:
        p = self.backend.pair(pair)
        width = self.backend.candle_seconds(candle_seconds)
        horizons = self.backend.horizons(p, width)
        selected = self.backend.chart_horizon(p, width, horizon_seconds)
        return chart_page(pair_to_url(p), width, horizons, selected)


def build_app(args: dict[str, Any] | None = None) -> Any:
    """The application graph; `args` override settings (e.g. `pairs`, `candle_seconds`)."""
    settings = ServeSettings(**(args or {}))
    settings_json = replica_settings_json(settings)
    # the model server is the publisher's: the API predicts with its own copies (LocalModels)
    # Serve's access log writes a line per request (and per handle call) to the replica's log
    # file and stderr: about a tenth of the API's CPU per cached GET; Serve's request metrics
    # count requests either way
    logging_config = {"enable_access_log": settings.serve_access_log}
    publisher = None
    if settings.publisher_enabled:
        models = ModelServer.options(  # type: ignore[attr-defined]
            num_replicas=settings.model_replicas, logging_config=logging_config
        ).bind(settings.mlflow_uri)
        publisher = PredictionPublisher.options(  # type: ignore[attr-defined]
            logging_config=logging_config
        ).bind(models, settings_json)
    return PredictionAPI.options(  # type: ignore[attr-defined]
        num_replicas=settings.api_replicas, logging_config=logging_config
    ).bind(publisher, settings_json)
