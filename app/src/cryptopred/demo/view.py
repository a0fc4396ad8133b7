"""The live status view: a snapshot of the running system, and its rendering with rich.

`collect` reads the stage actors, the DB and the HTTP API; `render` is pure, so it is tested
without any of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from cryptopred.demo.flow import Demo, http_json, pair_url
from cryptopred_core.db import connect, fetch_all


@dataclass
class PairView:
    pair: str
    last_candle: dict[str, Any] | None = None  # window_start_ms, close, volume, final
    champion: str | None = None  # "<name> v<version>"
    live: list[dict[str, Any]] = field(default_factory=list)  # /v1/metrics/live rows
    prediction: dict[str, Any] | None = None  # /v1/predictions/{pair}
    retrain: dict[str, Any] | None = None  # the retraining scheduler's row of this model


@dataclass
class Snapshot:
    taken_ms: int
    stages: list[dict[str, Any]]
    pairs: list[PairView]
    urls: dict[str, str]
    note: str = ""


def _clock(ts_ms: int | None) -> str:
    if not ts_ms:
        return "-"
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: Any, digits: int = 6) -> str:
    return "-" if value is None else f"{float(value):.{digits}g}"


def _retraining(row: dict[str, Any] | None, now_ms: int) -> str:
    """The last outcome and the next slot, e.g. `challenger v3 (schedule), next in 359 min`."""
    if row is None:
        return "-"
    last = row.get("last")
    done = "not yet"
    if last:
        version = f" v{last['version']}" if last.get("version") else ""
        done = f"{last['decision']}{version} ({last['trigger']})"
    if row.get("running_since_ms"):
        return f"{done}, training now"
    due_ms = row.get("next_due_ms")
    if due_ms is None:
        return done
    minutes = max(0.0, (int(due_ms) - now_ms) / 60_000)
    return f"{done}, next in {minutes:.0f} min"


def render(snapshot: Snapshot) -> Group:
    """Stages (restarts, rates, lag, last event), then per pair: candle, champion, live MAE,
    forecast."""
    stages = Table(title="stream stages", title_justify="left", expand=True)
    for name in ("actor", "restarts", "consumed", "per s", "lag", "dlq", "last event (UTC)"):
        left = name in ("actor", "last event (UTC)")
        stages.add_column(name, justify="left" if left else "right")
    for row in snapshot.stages:
        restarts = f"{row.get('restarts') or 0:,}"
        if "consumed" not in row:  # down or restarting: why, from its crash record if any
            why = row.get("last_error") or row.get("error", "?")
            stages.add_row(str(row.get("actor")), restarts, Text(str(why), "red"))
            continue
        stages.add_row(
            str(row["actor"]),
            restarts,
            f"{row['consumed']:,}",
            f"{row.get('consumed_per_s', 0):,.0f}",
            f"{row.get('lag_total', 0):,}",
            f"{row.get('dead', 0):,}",
            _clock(row.get("last_event_ms")),
        )
    pairs = Table(title="pairs", title_justify="left", expand=True)
    for name in ("pair", "last candle (UTC)", "close", "champion", "live MAE", "persistence"):
        pairs.add_column(name)
    pairs.add_column("last prediction")
    pairs.add_column("retraining")
    for view in snapshot.pairs:
        candle = view.last_candle or {}
        live = min(view.live, key=lambda r: int(r["horizon_seconds"]), default=None)
        live_mae = "-"
        if live is not None:
            live_mae = f"{_num(live['mae'], 4)} ({live['n']} @ {live['horizon_seconds']}s)"
        forecast = "-"
        if view.prediction:
            p = view.prediction
            forecast = (
                f"{_num(p['predicted_close'])} [{_num(p['lower'])}, {_num(p['upper'])}] "
                f"+{p['horizon_seconds']}s at {_clock(p['target_ts_ms'])}"
            )
        pairs.add_row(
            view.pair,
            _clock(candle.get("window_start_ms")) + ("" if candle.get("final", True) else " open"),
            _num(candle.get("close")),
            view.champion or Text("none yet", "yellow"),
            live_mae,
            "-" if live is None else _num(live["persistence_mae"], 4),
            forecast,
            _retraining(view.retrain, snapshot.taken_ms),
        )
    links = Table.grid(padding=(0, 2))
    for name, url in snapshot.urls.items():
        links.add_row(name, url)
    footer = Text(f"{_clock(snapshot.taken_ms)} UTC  {snapshot.note}  Ctrl-C stops the demo", "dim")
    return Group(stages, pairs, links, footer)


def collect(demo: Demo) -> Snapshot:
    """Read the stage actors, the DB and the API once; a part that does not answer shows '-'."""
    from cryptopred_ingest.stream.actors import pipeline_status

    try:
        stages = pipeline_status(demo.stream, timeout_s=2.0)
    except Exception as exc:
        stages = [{"actor": "stream", "error": f"{type(exc).__name__}: {exc}"}]
    views = [PairView(pair) for pair in demo.pairs]
    try:
        with connect(demo.stream.db_url, timeout_s=2) as conn:
            for view in views:
                rows = fetch_all(
                    conn,
                    "SELECT window_start_ms, close, volume, final FROM candles WHERE pair = %s "
                    "AND candle_seconds = %s ORDER BY window_start_ms DESC LIMIT 1",
                    (view.pair, demo.candle_seconds),
                )
                view.last_candle = rows[0] if rows else None
    except Exception as exc:  # the DB is down: the view says so, the rest still shows
        note = f"DB: {type(exc).__name__}"
    else:
        note = ""
    if demo.base_url:
        _read_api(demo.base_url, views)
    _read_retraining(demo, views)
    return Snapshot(time.time_ns() // 1_000_000, stages, views, demo.urls(), note)


def _read_api(base_url: str, views: list[PairView]) -> None:
    status, models = http_json(f"{base_url}/v1/models", timeout_s=2.0)
    champions = {
        m["pair"]: f"{m['name']} v{m['version']}"
        for m in (models if status == 200 and isinstance(models, list) else [])
        if m.get("version") is not None
    }
    for view in views:
        view.champion = champions.get(view.pair)
        url = pair_url(view.pair)
        status, live = http_json(f"{base_url}/v1/metrics/live?pair={url}&window=1h", 2.0)
        view.live = live if status == 200 and isinstance(live, list) else []
        status, prediction = http_json(f"{base_url}/v1/predictions/{url}", 2.0)
        view.prediction = prediction if status == 200 and isinstance(prediction, dict) else None


def _read_retraining(demo: Demo, views: list[PairView]) -> None:
    """Each pair's row of the retraining scheduler's status (nothing when it is not running)."""
    import ray

    from cryptopred_training.retrain.scheduler import find_scheduler

    try:
        handle = find_scheduler()
        if handle is None:
            return
        status = ray.get(handle.status.remote(), timeout=2.0)
    except Exception:  # restarting: the next refresh shows it again
        return
    rows = {m["pair"]: m for m in status["models"] if m["candle_seconds"] == demo.candle_seconds}
    for view in views:
        view.retrain = rows.get(view.pair)
