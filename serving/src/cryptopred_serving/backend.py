"""What the HTTP routes do, apart from HTTP: DB reads, champion lookup, model calls, checks.

Errors a client caused raise `ClientError` with the status code and the field; the ingress
turns them into 404/422/503 answers, never a 500.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool
from pydantic import BaseModel

from cryptopred_core.records import IndicatorRow, RecordError
from cryptopred_serving import queries
from cryptopred_serving.champion_watch import Champion
from cryptopred_serving.pairs import model_name, pair_from_url, pair_to_url
from cryptopred_serving.schemas import PredictionOut, PredictResponse
from cryptopred_serving.settings import ServeSettings

T = TypeVar("T")

_WINDOW = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class ClientError(Exception):
    """A request the client can fix: HTTP `status`, the offending field and a message."""

    def __init__(self, status: int, message: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.loc = loc

    def body(self) -> dict[str, Any]:
        if self.status == 422:
            return {"detail": [{"loc": list(self.loc), "msg": self.message, "type": "value_error"}]}
        return {"detail": self.message}


#: connections the API's route threads share (the threadpool may run more requests than this;
#: those wait for a connection, each query being short)
POOL_MAX_SIZE = 8
#: how long a request waits for a connection (a new one, or one another request returns)
POOL_TIMEOUT_S = 5.0
#: the pool's connections show this name in pg_stat_activity
APPLICATION_NAME = "cryptopred-serving-api"


class Db:
    """The API's DB access: a pool of autocommit connections shared by the route threads,
    opened at the first call. A connection an error left broken is discarded when it goes
    back to the pool; the call is then tried once more after the pool has checked its idle
    connections (after a DB restart every one of them is broken), and a second failure (or no
    connection within POOL_TIMEOUT_S) is a 503."""

    def __init__(
        self, url: str, *, max_size: int = POOL_MAX_SIZE, timeout_s: float = POOL_TIMEOUT_S
    ) -> None:
        self.url = url
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs={
                "autocommit": True,
                "connect_timeout": max(1, int(timeout_s)),
                "application_name": APPLICATION_NAME,
            },
            timeout=timeout_s,
            name="serving-api",
            open=False,
        )

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        self.pool.open()  # a no-op once open
        for attempt in (1, 2):
            try:
                with self.pool.connection() as conn:
                    return fn(conn, *args)
            except psycopg.OperationalError as exc:  # PoolTimeout is one too
                if attempt == 2:
                    raise ClientError(503, f"database unavailable: {exc}".splitlines()[0]) from None
                self.pool.check()
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the pool and its connections (a closed pool cannot be opened again)."""
        self.pool.close()


def parse_window_ms(window: str) -> int:
    match = _WINDOW.match(window)
    if not match:
        raise ClientError(422, "expected a duration like 30m, 1h or 7d", ("query", "window"))
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


class Backend:
    """The API's logic over the DB, the champion watcher and a model-calling function."""

    def __init__(
        self,
        settings: ServeSettings,
        champion_of: Callable[[str, int], Champion | None],
        predict: Callable[[Champion, list[dict[str, Any]]], list[dict[str, Any]]],
    ) -> None:
        self.settings = settings
        self.db = Db(settings.db_url)
        self.champion_of = champion_of
        self.predict_fn = predict
        self.latest_cache_ms = settings.latest_cache_ms
        # answers kept for latest_cache_ms, as JSON: latest predictions (None: there is none)
        self._cache: dict[tuple[str, int, int], tuple[float, bytes | None]] = {}
        # and the last rows-less predict per series: (made at, model id, window end, answer)
        self._predicted: dict[tuple[str, int], tuple[float, str, int, bytes]] = {}

    # -- checks ----------------------------------------------------------------------------
    def pair(self, text: str, loc: tuple[str, ...] = ("path", "pair")) -> str:
        pair = pair_from_url(text)
        if pair is None:
            raise ClientError(404, f"unknown pair {text!r}: expected BASE-QUOTE like BTC-USD")
        if pair not in self.settings.pairs:
            served = ", ".join(pair_to_url(p) for p in self.settings.pairs)
            raise ClientError(404, f"unknown pair {pair_to_url(pair)}; served pairs: {served}")
        return pair

    def candle_seconds(self, value: int | None) -> int:
        if value is None:
            return self.settings.candle_seconds[0]
        if value not in self.settings.candle_seconds:
            raise ClientError(
                422,
                f"candle_seconds {value} is not served; served: {self.settings.candle_seconds}",
                ("query", "candle_seconds"),
            )
        return value

    def champion(self, pair: str, candle_seconds: int) -> Champion:
        champion = self.champion_of(pair, candle_seconds)
        if champion is None:
            name = model_name(pair, candle_seconds)
            raise ClientError(
                503,
                f"no champion model for {name} yet: train one with `cryptopred train --pair "
                f"{pair} --candle-seconds {candle_seconds}`",
            )
        return champion

    # -- reads -----------------------------------------------------------------------------
    def latest_key(
        self, pair_text: str, candle_seconds: int | None, horizon_seconds: int | None
    ) -> tuple[str, int, int]:
        """(pair, candle_seconds, horizon) of a latest-prediction request as it came, checked."""
        pair = self.pair(pair_text)
        candle_seconds = self.candle_seconds(candle_seconds)
        champion = self.champion(pair, candle_seconds)
        horizons = champion.horizon_seconds
        horizon = horizons[0] if horizon_seconds is None and horizons else horizon_seconds
        if horizon is None or (horizons and horizon not in horizons):
            raise ClientError(
                422,
                f"horizon_seconds must be one of {list(horizons)}",
                ("query", "horizon_seconds"),
            )
        return (pair, candle_seconds, horizon)

    def latest(self, key: tuple[str, int, int], *, read: bool = True) -> bytes | None:
        """The latest prediction as JSON (PredictionOut), reused for `latest_cache_ms`.

        With `read=False` only a cached answer, else None (the event loop must not wait for
        the DB); 404 when there is no prediction yet.
        """
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self.latest_cache_ms / 1000:
            body = cached[1]
        elif not read:
            return None
        else:
            row = self.db.run(queries.latest_prediction, *key)
            body = _json(PredictionOut, row) if row is not None else None
            self._cache[key] = (now, body)
        if body is None:
            raise ClientError(404, f"no prediction for {pair_to_url(key[0])} yet")
        return body

    def cached_latest(
        self, pair_text: str, candle_seconds: int | None, horizon_seconds: int | None
    ) -> bytes | None:
        """The latest-prediction answer for a request when the cache holds it fresh, else
        None: also for anything the route would refuse (it then says why)."""
        try:
            key = self.latest_key(pair_text, candle_seconds, horizon_seconds)
            return self.latest(key, read=False)
        except ClientError:
            return None

    def history(self, pair: str, candle_seconds: int, limit: int) -> list[dict[str, Any]]:
        return self.db.run(queries.prediction_history, pair, candle_seconds, limit)

    def live(self, pair: str, window: str) -> list[dict[str, Any]]:
        since_ms = int(time.time() * 1000) - parse_window_ms(window)
        rows = self.db.run(queries.live_metrics, pair, since_ms)
        return [live_metric(r) for r in rows]

    def models(self) -> list[dict[str, Any]]:
        out = []
        for pair in self.settings.pairs:
            for width in self.settings.candle_seconds:
                champion = self.champion_of(pair, width)
                tags = champion.tags if champion else {}
                out.append(
                    {
                        "pair": pair,
                        "candle_seconds": width,
                        "name": model_name(pair, width),
                        "version": champion.version if champion else None,
                        "alias": "champion" if champion else None,
                        "model_kind": tags.get("model_kind", "transformer") if champion else None,
                        "baseline": tags.get("baseline"),
                        "reason": tags.get("demoted_reason") or tags.get("reason"),
                        "trained_from_ms": _int_or_none(tags.get("trained_from_ms")),
                        "trained_to_ms": _int_or_none(tags.get("trained_to_ms")),
                        "window_steps": champion.window_steps if champion else None,
                        "horizon_seconds": list(champion.horizon_seconds) if champion else [],
                        "test_metrics": {
                            k: float(v)
                            for k, v in (champion.metrics if champion else {}).items()
                            if k.startswith("test_")
                        },
                        "gate_metrics": {
                            k: float(v)
                            for k, v in (champion.metrics if champion else {}).items()
                            if k.startswith("gate_")
                        },
                    }
                )
        return out

    def horizons(self, pair: str, candle_seconds: int) -> tuple[int, ...]:
        """The current champion's horizons; none while there is no champion."""
        champion = self.champion_of(pair, candle_seconds)
        return champion.horizon_seconds if champion else ()

    def chart_horizon(self, pair: str, candle_seconds: int, value: int | None) -> int | None:
        """A chart request's horizon, checked against the champion's (422 naming the field)."""
        horizons = self.horizons(pair, candle_seconds)
        if value is not None and value not in horizons:
            raise ClientError(
                422,
                f"horizon_seconds {value} is not a horizon of the champion of "
                f"{model_name(pair, candle_seconds)}: {list(horizons)}",
                ("query", "horizon_seconds"),
            )
        return value

    def chart(
        self, pair: str, candle_seconds: int, limit: int, horizon_seconds: int | None = None
    ) -> dict[str, Any]:
        """Recent candles and the predictions over them (one horizon's, or all of them when
        `horizon_seconds` is None), with the champion that serves now (None: none yet)."""
        horizon = self.chart_horizon(pair, candle_seconds, horizon_seconds)
        champion = self.champion_of(pair, candle_seconds)
        candles, predictions = self.db.run(queries.chart_rows, pair, candle_seconds, limit, horizon)
        return {
            "pair": pair,
            "candle_seconds": candle_seconds,
            "horizon_seconds": horizon,
            "model_name": champion.name if champion else None,
            "model_version": champion.version if champion else None,
            "candles": candles,
            "predictions": predictions,
        }

    # -- predict ---------------------------------------------------------------------------
    def cached_prediction(self, pair: str, candle_seconds: int) -> bytes | None:
        """A rows-less predict's answer made less than `latest_cache_ms` ago by the current
        champion (the DB's latest rows cannot have changed much since), else None."""
        champion = self.champion(pair, candle_seconds)
        cached = self._predicted.get((pair, candle_seconds))
        if cached is None or cached[1] != champion.model_id:
            return None
        return cached[3] if time.monotonic() - cached[0] < self.latest_cache_ms / 1000 else None

    def predict_latest(self, pair: str, candle_seconds: int) -> bytes:
        """Every horizon's forecast as JSON (PredictResponse) on the latest rows in the DB,
        reusing the last answer while those rows and the champion are unchanged. (A request's
        own rows go through `explicit_window` and `answer`, the model awaited in between.)"""
        champion = self.champion(pair, candle_seconds)
        need = champion.window_steps
        # one row more than the window: its close is the first row's previous close (ret_1)
        rows = self.db.run(queries.recent_indicator_rows, pair, candle_seconds, need + 1)
        cached = self._predicted.get((pair, candle_seconds))
        if (
            cached is not None
            and len(rows) >= need
            and cached[1:3] == (champion.model_id, int(rows[-1]["window_end_ms"]))
        ):
            self._predicted[(pair, candle_seconds)] = (time.monotonic(), *cached[1:])
            return cached[3]
        window = self._window(champion, rows, ("body", "pair"))
        body = self.answer(pair, candle_seconds, champion, self.predict_fn(champion, window))
        self._predicted[(pair, candle_seconds)] = (
            time.monotonic(),
            champion.model_id,
            int(window[-1]["window_end_ms"]),
            body,
        )
        return body

    def explicit_window(
        self, pair: str, candle_seconds: int, rows: list[dict[str, Any]]
    ) -> tuple[Champion, list[dict[str, Any]]]:
        """The champion and the model's window from a request's own rows, checked (422 naming
        the row or the required length)."""
        champion = self.champion(pair, candle_seconds)
        for i, row in enumerate(rows):
            if row["pair"] != pair or row["candle_seconds"] != candle_seconds:
                raise ClientError(
                    422,
                    "every row must have the request's pair and candle_seconds",
                    ("body", "rows", i),
                )
            try:
                IndicatorRow(**row)
            except (RecordError, TypeError) as exc:
                raise ClientError(422, str(exc), ("body", "rows", i)) from None
        return champion, self._window(champion, rows, ("body", "rows"))

    @staticmethod
    def _window(
        champion: Champion, rows: list[dict[str, Any]], loc: tuple[str | int, ...]
    ) -> list[dict[str, Any]]:
        need = champion.window_steps
        if len(rows) < need:
            raise ClientError(
                422,
                f"need at least {need} indicator rows (the model's window), got {len(rows)}",
                loc,
            )
        # the window and, when given, the row before it (the model's `context_steps`)
        return sorted(rows, key=lambda r: int(r["window_start_ms"]))[-(need + 1) :]

    @staticmethod
    def answer(
        pair: str, candle_seconds: int, champion: Champion, forecasts: list[dict[str, Any]]
    ) -> bytes:
        """The PredictResponse JSON of a window's forecasts."""
        return _json(
            PredictResponse,
            {
                "pair": pair,
                "candle_seconds": candle_seconds,
                "model_name": champion.name,
                "model_version": champion.version,
                "window_end_ms": int(forecasts[0]["window_end_ms"]) if forecasts else 0,
                "forecasts": forecasts,
            },
        )


def _json(model: type[BaseModel], value: dict[str, Any]) -> bytes:
    """`value` as the response model's JSON (what FastAPI would send for it)."""
    return model.model_validate(value).model_dump_json().encode()


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def live_metric(row: dict[str, Any]) -> dict[str, Any]:
    """One `live_metrics` row as the API shows it: the skill against the baseline
    (1 - pinball / baseline pinball over the outcomes that have both; None without any)."""
    out = {k: v for k, v in row.items() if not k.startswith("paired_")}
    out["model_version"] = str(row["model_version"])
    mine, theirs = row.get("paired_pinball_sum"), row.get("paired_baseline_sum")
    paired = row.get("paired_n") or 0
    out["baseline_n"] = int(paired)
    out["skill"] = (
        1.0 - float(mine) / float(theirs)
        if paired and mine is not None and theirs is not None and float(theirs) > 0
        else None
    )
    for key in ("pinball_loss", "baseline_pinball_loss"):
        out[key] = None if row.get(key) is None else float(row[key])
    return out
