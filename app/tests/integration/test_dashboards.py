"""Every SQL target of every committed dashboard runs on the real embedded PostgreSQL after a
short pipeline run, and the panels return rows.

The pipeline runs in this process, without Ray or a broker: synthetic trades go through the
real stage logic (candle stage, indicator stage, sink, prediction publisher with a stand-in
champion), each stage fed the previous one's records as Kafka messages would be, and every row
it emits written through the real DB writer. Then each dashboard's variable queries and panel
queries are run with the variables substituted as Grafana does (as query parameters here).
"""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryptopred.dashboards import targets as tg
from cryptopred_core import topics
from cryptopred_core.db import connect, fetch_all
from cryptopred_core.pipeline.stage import Emit, Inbound, Stage
from cryptopred_core.pipeline.writer import DbWriter
from cryptopred_core.records import encode
from cryptopred_ingest.sources.synthetic import generate
from cryptopred_ingest.stream.candles import CandleStage
from cryptopred_ingest.stream.indicator_stage import IndicatorStage
from cryptopred_ingest.stream.sink import SinkStage
from cryptopred_serving.champion_watch import Champion
from cryptopred_serving.publisher import PublisherStage
from cryptopred_testsupport.streams import closing_trade

pytestmark = pytest.mark.integration

DASHBOARDS = Path(__file__).resolve().parents[3] / "dashboards"
WIDTHS = (60, 300)
HORIZONS = (60, 300)
HOURS = 3
HOUR_MS = 3_600_000
WINDOW_STEPS = 5

Message = tuple[str, bytes, bytes]  # topic, key, value


class Feeder:
    """Feeds one stage messages as its runner would, and writes the rows it emits."""

    def __init__(self, stage: Stage, writer: DbWriter) -> None:
        self.stage = stage
        self.writer = writer
        self.offsets: dict[str, int] = {}

    def feed(self, messages: list[Message], now_ms: int, *, tick: bool = False) -> list[Message]:
        out = Emit()
        for topic, key, value in messages:
            offset = self.offsets.get(topic, 0)
            self.offsets[topic] = offset + 1
            inbound = Inbound(topic, 0, offset, key, value, now_ms)
            self.stage.handle(inbound, now_ms, out)
        if tick:
            self.stage.tick(now_ms, out)
        self.stage.end_batch(now_ms, out)
        assert not out.dead, out.dead[:3]
        self.writer.write(out.rows)
        return out.records


def predict(champion: Champion, window: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stand-in model: the window's drift (halved by version 1) with an ATR-wide interval."""
    last = window[-1]
    close = float(last["close"])
    drift = (close - float(window[0]["close"])) / len(window)
    if champion.version == "1":
        drift /= 2
    spread = max(float(last["atr_14"] or 0.0), close * 1e-4)
    forecasts = []
    for horizon in HORIZONS:
        steps = horizon / int(last["candle_seconds"])
        predicted = max(close + drift * steps, close * 0.5)
        half = 1.28 * spread * math.sqrt(steps)
        forecasts.append(
            {
                "horizon_seconds": horizon,
                "window_end_ms": last["window_end_ms"],
                "target_ts_ms": last["window_end_ms"] + horizon * 1000,
                "predicted_close": predicted,
                "predicted_return": math.log(predicted / close),
                "lower": max(predicted - half, predicted * 0.01),
                "upper": predicted + half,
            }
        )
    return forecasts


def run_pipeline(db_url: str, pair: str) -> tuple[int, int]:
    """Trades of `pair` through every stage into the DB; returns the time range (ms)."""
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - now_ms % HOUR_MS - HOURS * HOUR_MS
    trades = [
        t for batch in generate([pair], HOURS / 24, seed=7, start_ms=start_ms) for t in batch.trades
    ]
    trades.append(closing_trade(trades))
    writer = DbWriter(db_url, "postgres")
    candle_stage = CandleStage(db_url, f"dash-{pair}", list(WIDTHS), 5000, 250)
    candle_stage.assign([(topics.TRADES, 0)])
    candles = Feeder(candle_stage, writer)
    trade_messages = [(topics.TRADES, t.pair.encode(), encode(t)) for t in trades]
    candle_records: list[Message] = []
    for i in range(0, len(trade_messages), 2000):
        candle_records += candles.feed(trade_messages[i : i + 2000], now_ms)
    candle_records += candles.feed([], now_ms + 1000, tick=True)  # the open candle

    indicator_records = Feeder(IndicatorStage(db_url), writer).feed(candle_records, now_ms)
    Feeder(SinkStage(), writer).feed(candle_records + indicator_records, now_ms)

    champion = {"version": "1"}
    publisher = PublisherStage(
        db_url,
        {(pair, WIDTHS[0])},
        lambda p, cs: Champion(
            name=f"{p.replace('/', '-')}-{cs}s",
            version=champion["version"],
            run_id=None,
            tags={"window_steps": str(WINDOW_STEPS), "horizon_seconds": "60,300"},
        ),
        predict,
    )
    feeder = Feeder(publisher, writer)
    half = len(indicator_records) // 2
    for i in range(0, len(indicator_records), 50):
        if i >= half:
            champion["version"] = "2"  # a promotion halfway: two model versions to compare
        feeder.feed(indicator_records[i : i + 50], now_ms + (1 if i < half else 2) * 1000)
    return start_ms, max(int(trades[-1].ts_ms), now_ms) + 60_000


@pytest.fixture(scope="module")
def loaded(postgres: Any) -> dict[str, Any]:
    pair = f"D{uuid.uuid4().hex[:6].upper()}/USD"
    start_ms, end_ms = run_pipeline(postgres.db_url, pair)
    return {"db_url": postgres.db_url, "pair": pair, "from": start_ms, "to": end_ms}


def run(
    conn: psycopg.Connection, target: tg.Target, values: dict[str, Any], multi: set[str]
) -> list[dict[str, Any]]:
    query, params = tg.bind(target.text, values, multi)
    try:
        with conn.transaction():
            return fetch_all(conn, query, params)
    except psycopg.Error as exc:
        raise AssertionError(
            f"{target.dashboard} / {target.panel} [{target.ref}] failed: {exc}\n{target.text}"
        ) from None


def resolve_variables(
    conn: psycopg.Connection, board: dict[str, Any], loaded: dict[str, Any]
) -> dict[str, Any]:
    """Run the variable queries in order; the test's pair, else the first option, else all."""
    values: dict[str, Any] = {
        "__from": loaded["from"],
        "__to": loaded["to"],
        "__interval_ms": 60_000,
    }
    multi = tg.multi_variables(board)
    for target in tg.variable_queries(board):
        name = target.panel.removeprefix("variable ")
        options = [str(next(iter(r.values()))) for r in run(conn, target, values, multi)]
        assert options, f"{board['uid']}: variable {name} has no options"
        if name == "pair":
            assert loaded["pair"] in options, options
            values[name] = loaded["pair"]
        else:
            values[name] = options if name in multi else options[0]
    return values


def test_every_dashboard_has_sql_targets() -> None:
    boards = tg.load_dashboards(DASHBOARDS)
    assert {"cryptopred-market", "cryptopred-predictions", "cryptopred-health"} <= set(boards)
    for uid in ("cryptopred-market", "cryptopred-predictions", "cryptopred-health"):
        assert tg.sql_targets(boards[uid]), uid


@pytest.mark.parametrize(
    "uid", ["cryptopred-market", "cryptopred-predictions", "cryptopred-health"]
)
def test_every_sql_target_runs_and_returns_rows(loaded: dict[str, Any], uid: str) -> None:
    board = tg.load_dashboards(DASHBOARDS)[uid]
    multi = tg.multi_variables(board)
    with connect(loaded["db_url"]) as conn:
        values = resolve_variables(conn, board, loaded)
        empty = []
        for target in tg.sql_targets(board):
            rows = run(conn, target, values, multi)
            if not rows:
                empty.append(f"{target.panel} [{target.ref}]")
            elif target.fmt == "time_series":
                assert "time" in rows[0], f"{target.panel}: no time column"
                times = [r["time"] for r in rows]
                assert times == sorted(times), f"{target.panel}: rows not in time order"
                assert loaded["from"] - 300_000 <= times[0] and times[-1] <= loaded["to"], (
                    target.panel
                )
            for name in multi:  # a repeated panel gets one value at a time
                if f"${name}" in target.text:
                    for value in values[name]:
                        assert run(conn, target, {**values, name: [value]}, multi), (
                            target.panel,
                            value,
                        )
        assert not empty, f"{uid}: panels without rows: {empty}"


def test_core_panels_show_what_the_pipeline_wrote(loaded: dict[str, Any]) -> None:
    boards = tg.load_dashboards(DASHBOARDS)
    with connect(loaded["db_url"]) as conn:
        market = boards["cryptopred-market"]
        values = resolve_variables(conn, market, loaded)
        assert values["candle_seconds"] == "60"
        (ohlc,) = [t for t in tg.sql_targets(market) if t.panel.startswith("OHLC")]
        rows = run(conn, ohlc, values, set())
        stored = fetch_all(
            conn,
            "SELECT count(*) AS n FROM candles WHERE pair = %s AND candle_seconds = 60",
            (loaded["pair"],),
        )
        assert len(rows) == stored[0]["n"] >= HOURS * 60
        assert {"open", "high", "low", "close", "volume"} <= set(rows[0])

        board = boards["cryptopred-predictions"]
        multi = tg.multi_variables(board)
        values = resolve_variables(conn, board, loaded)
        assert sorted(values["horizon"], key=int) == [str(h) for h in HORIZONS]
        assert values["model_version"] == "2"  # the newest version first
        (accuracy,) = [t for t in tg.sql_targets(board) if t.panel.startswith("Live MAE")]
        rows = run(conn, accuracy, values, multi)
        assert {(r["model_version"], r["horizon_seconds"]) for r in rows} == {
            (v, h) for v in ("1", "2") for h in HORIZONS
        }
        for r in rows:
            assert r["n"] > 0 and r["mae"] >= 0 and r["persistence_mae"] >= 0
            assert 0 <= r["interval_coverage"] <= 1 and 0 <= r["direction_accuracy"] <= 1
