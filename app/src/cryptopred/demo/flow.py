"""The demo's steps, in order: stream stages, history, training, Serve, then live trades.

The components are imported when a step runs (as the CLI registers them), so the platform
package does not depend on them at import time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from cryptopred.demo.settings import DemoSettings
from cryptopred_core.db import connect, create_schema, fetch_all
from cryptopred_core.kafka import ensure_topics
from cryptopred_core.settings import Settings
from cryptopred_core.topics import ALL_TOPICS

Say = Callable[[str], None]
SOURCE_ACTOR = "demo-source"
DEMO_RETRAIN_EVERY = "6h"


class DemoError(Exception):
    """A step that cannot go on; the message says which and why, in one line."""


def _clock(ts_ms: int) -> str:
    return time.strftime("%m-%d %H:%M", time.gmtime(ts_ms / 1000)) if ts_ms else "none yet"


def pair_url(pair: str) -> str:
    return pair.replace("/", "-")


def http_json(url: str, timeout_s: float = 5.0) -> tuple[int, Any]:
    """(status, parsed body) of a GET on loopback; status 0 when nothing answers, body None
    when it is not JSON."""
    try:
        response = httpx.get(url, timeout=timeout_s, trust_env=False)  # loopback: no proxy
    except (httpx.HTTPError, httpx.InvalidURL):
        return 0, None
    try:
        return response.status_code, json.loads(response.content or b"null")
    except ValueError:
        return response.status_code, None


class Demo:
    """Holds each component's settings and what the demo started, so `stop` can undo it."""

    def __init__(
        self,
        settings: DemoSettings,
        say: Say = print,
        overrides: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        from cryptopred_ingest.settings import IngestSettings
        from cryptopred_ingest.stream.settings import StreamSettings
        from cryptopred_serving.settings import ServeSettings
        from cryptopred_training.settings import TrainSettings

        self.settings = settings
        self.say = say
        self.pairs = tuple(settings.demo_pairs)
        common = settings.model_dump(include=set(Settings.model_fields)) | {"pairs": self.pairs}
        extra = overrides or {}
        self.ingest = IngestSettings(**common | extra.get("ingest", {}))
        self.stream = StreamSettings(**common | extra.get("stream", {}))
        self.train = TrainSettings(**common | extra.get("train", {}))
        if "retrain_every" not in self.train.model_fields_set:
            # the demo retrains unless the user chose otherwise (elsewhere it is off)
            self.train = self.train.model_copy(update={"retrain_every": DEMO_RETRAIN_EVERY})
        # the publisher predicts the last hour of the history (live MAE has data at once), not
        # all of it: a week of rows would take many minutes to catch up on a laptop
        serve = {"publisher_max_age_s": 3600.0} | extra.get("serve", {})
        self.serve = ServeSettings(**common | serve)
        self.candle_seconds = self.stream.candle_seconds[0]
        self.sources: list[Any] = []
        self.base_url: str | None = None
        self.decisions: dict[str, str] = {}
        # what the gate decided for each pair's transformer: champion or challenger
        self.gate_decisions: dict[str, str] = {}
        self.history_end_ms = 0

    # -- the steps -----------------------------------------------------------------------
    def run_to_live(self, connected: Callable[[], None] = lambda: None) -> None:
        """Every step up to live predictions; raises DemoError when one cannot go on.
        `connected` runs once this process has joined Ray (the first step that does)."""
        self.prepare()
        self.start_stream()
        connected()
        self.load_history()
        self.wait_for_history()
        self.train_models()
        self.deploy()
        self.start_retraining()
        self.wait_for_predictions()

    def prepare(self) -> None:
        ensure_topics(self.stream, ALL_TOPICS, self.stream.topic_partitions)
        with connect(self.stream.db_url) as conn:
            create_schema(conn, self.stream.db_dialect)
            conn.commit()

    def start_stream(self) -> None:
        from cryptopred_ingest.stream.actors import start_pipeline

        names = start_pipeline(self.stream)
        self.say(f"stream stages running: {', '.join(names)}")

    def load_history(self) -> None:
        """Synthetic: one generator that catches up `history_days` then runs on wall time.
        Kraken: REST backfill of `history_days`, then the WebSocket live source."""
        from cryptopred_ingest.actors import start_source_actor
        from cryptopred_ingest.sources.factory import SourceSpec, synthetic_spec

        self._stop_earlier_source()
        now_ms = time.time_ns() // 1_000_000
        self.history_end_ms = now_ms
        days = self.settings.history_days
        if self.settings.demo_source == "synthetic":
            seed, prices = self.settings.demo_seed, None
            earlier = self.history_progress()
            if min(earlier.values()) > now_ms - days * 86_400_000:
                # an earlier demo left its history: go on from its last candles, no jump
                resume_ms = max(earlier.values())
                days = (now_ms - resume_ms) / 86_400_000
                seed += resume_ms // 60_000  # a new path, from the last closes
                prices = self.last_closes()
                self.say(f"the DB holds an earlier demo's history: going on from its end {prices}")
            spec = synthetic_spec(
                self.pairs,
                days,
                seed,
                self.settings.demo_momentum,
                live=True,
                now_ms=now_ms,
                start_prices=prices,
            )
            self.say(
                f"synthetic trades: {days:g} days of history for {', '.join(self.pairs)}, "
                f"then live (momentum {self.settings.demo_momentum:g})"
            )
        else:
            self._backfill(now_ms, days)
            spec = SourceSpec("live", pairs=self.pairs)
            self.say("Kraken WebSocket v2 live trades from now on")
        self.sources.append(
            start_source_actor(
                spec, self.ingest, SOURCE_ACTOR, self.stream.ray_namespace, detached=True
            )
        )

    def _stop_earlier_source(self) -> None:
        """A source an earlier demo left running (with --no-view) would be found by name."""
        import ray

        try:
            earlier = ray.get_actor(SOURCE_ACTOR, namespace=self.stream.ray_namespace)
        except ValueError:
            return
        self.say("stopping the trade source an earlier demo left running")
        ray.kill(earlier)

    def _backfill(self, now_ms: int, days: float) -> None:
        from cryptopred_ingest.actors import PRODUCER_OVERRIDES
        from cryptopred_ingest.backfill import CursorStore, backfill, client_from_settings
        from cryptopred_ingest.publish import make_publisher
        from cryptopred_ingest.sources.kraken_rest import rest_pair

        probe = (
            f"{self.ingest.kraken_rest_url}/0/public/Trades"
            f"?pair={rest_pair(self.pairs[0])}&since={now_ms * 1_000_000}"
        )
        status, _ = http_json(probe, timeout_s=self.ingest.rest_timeout_s)
        if status != 200:  # fail in seconds, not after the backfill's retries
            raise DemoError(
                f"Kraken REST at {self.ingest.kraken_rest_url} does not answer (GET {probe}: "
                f"{status or 'no connection'}); offline, run `make demo SOURCE=synthetic`"
            )
        since_ns = (now_ms - int(days * 86_400_000)) * 1_000_000
        self.say(f"Kraken REST backfill of the last {days:g} days (resumable) ...")
        publisher = make_publisher(self.ingest, "ingest-backfill", **PRODUCER_OVERRIDES)
        store = CursorStore(self.ingest.data_dir.resolve() / "demo-backfill")
        try:
            counts = backfill(
                self.pairs,
                since_ns,
                now_ms * 1_000_000,
                client_from_settings(self.ingest),
                publisher,
                store,
            )
        except Exception as exc:
            raise DemoError(
                f"Kraken backfill failed ({type(exc).__name__}: {exc}); offline, run "
                "`make demo SOURCE=synthetic`"
            ) from None
        publisher.flush()
        self.say(f"backfilled {sum(counts.values()):,} trades: {counts}")

    def history_progress(self) -> dict[str, int]:
        """Per pair, the end of its last final indicator row in the DB (0: none yet)."""
        with connect(self.stream.db_url) as conn:
            rows = fetch_all(
                conn,
                "SELECT pair, max(window_end_ms) AS last_ms FROM technical_indicators "
                "WHERE candle_seconds = %s AND final GROUP BY pair",
                (self.candle_seconds,),
            )
        found = {r["pair"]: int(r["last_ms"]) for r in rows}
        return {pair: found.get(pair, 0) for pair in self.pairs}

    def last_closes(self) -> dict[str, float]:
        """Per pair, the close of its last final row in the DB."""
        closes = {}
        with connect(self.stream.db_url) as conn:
            for pair in self.pairs:
                rows = fetch_all(
                    conn,
                    "SELECT close FROM technical_indicators WHERE pair = %s "
                    "AND candle_seconds = %s AND final ORDER BY window_start_ms DESC LIMIT 1",
                    (pair, self.candle_seconds),
                )
                if rows:
                    closes[pair] = float(rows[0]["close"])
        return closes

    def wait_for_history(self) -> None:
        """Until every pair's final rows reach the minute before the history's end."""
        target_ms = self.history_end_ms - self.candle_seconds * 1000
        deadline = time.monotonic() + self.settings.demo_history_timeout_s
        last_said = 0.0
        while True:
            progress = self.history_progress()
            if all(last_ms >= target_ms for last_ms in progress.values()):
                self.say("history is in the DB (final candles and indicators)")
                return
            if time.monotonic() > deadline:
                behind = {p: ms for p, ms in progress.items() if ms < target_ms}
                raise DemoError(
                    f"history did not reach the DB within {self.settings.demo_history_timeout_s:g}"
                    f" s (last final rows: {behind}); see `cryptopred stream status`"
                )
            if time.monotonic() - last_said > 10:
                done = {p: _clock(ms) for p, ms in progress.items()}
                self.say(f"streaming history ... final rows up to {done}, need {_clock(target_ms)}")
                last_said = time.monotonic()
            time.sleep(1.0)

    def train_models(self) -> None:
        from cryptopred_training.dataset import DataValidationError
        from cryptopred_training.train_run import TrainRequest, train

        for pair in self.pairs:
            self.say(f"training {pair} ({self.candle_seconds} s candles) on Ray Train ...")
            try:
                report = train(self.train, TrainRequest(pair, self.candle_seconds), say=self.say)
            except DataValidationError as exc:
                self.decisions[pair] = f"not trained: {exc}"
                self.say(f"{pair}: not trained: {exc}")
                continue
            decision = report.outcome.decision
            served = report.logged.champion_version
            self.gate_decisions[pair] = decision.decision
            self.decisions[pair] = (
                f"champion v{served} ({decision.served})" if served else "no champion"
            )
            self.say(
                f"{pair}: transformer {decision.decision} (version {report.logged.version}, "
                f"{report.total_seconds:.0f} s): {decision.reason}; serving version {served}"
            )

    def deploy(self) -> None:
        from cryptopred_serving.deploy import deploy_app

        self.say("deploying the Serve application ...")
        self.base_url = deploy_app(self.serve, pairs=",".join(self.pairs))

    def start_retraining(self) -> None:
        """The retraining scheduler, when CRYPTOPRED_RETRAIN_EVERY is not off."""
        from cryptopred_training.retrain.scheduler import start_scheduler

        if self.train.retrain_every_s is None:
            self.say("scheduled retraining is off (CRYPTOPRED_RETRAIN_EVERY=off)")
            return
        start_scheduler(self.train)
        self.say(
            f"retraining every {self.train.retrain_every} on the last {self.train.retrain_window}"
            " of history (`cryptopred retrain status`)"
        )

    def wait_for_predictions(self, timeout_s: float = 300.0) -> None:
        """Until the latest-prediction endpoint answers for every pair with a champion."""
        promoted = [p for p, d in self.decisions.items() if d.startswith("champion")]
        if not promoted:
            self.say("no pair was trained, so no model serves: the API answers 503 until one is")
            return
        deadline = time.monotonic() + timeout_s
        waiting = set(promoted)
        while waiting:
            for pair in sorted(waiting):
                status, _ = http_json(f"{self.base_url}/v1/predictions/{pair_url(pair)}")
                if status == 200:
                    waiting.discard(pair)
            if waiting and time.monotonic() > deadline:
                raise DemoError(f"no prediction served for {sorted(waiting)} within {timeout_s} s")
            if waiting:
                time.sleep(1.0)
        self.say(f"predictions are flowing for {', '.join(promoted)}")

    # -- what the user looks at ----------------------------------------------------------
    def urls(self) -> dict[str, str]:
        out = {"Ray dashboard": self.settings.ray_dashboard, "MLflow UI": self.settings.mlflow_uri}
        if self.settings.ray_address is None:  # the dashboard asks for the embedded head's token
            out["Ray token (paste it)"] = str(self.settings.ray_token_path)
        if self.base_url:
            first = pair_url(self.pairs[0])
            out = {
                "API": f"{self.base_url}/v1/predictions/{first}",
                "API docs": f"{self.base_url}/docs",
                "chart": f"{self.base_url}/ui/{first}",
            } | out
        return out

    def stop(self) -> None:
        """Stop what the demo started (sources, stream stages, the Serve app); the stack stays."""
        import ray

        from cryptopred_ingest.stream.actors import stop_pipeline
        from cryptopred_serving.deploy import delete_app
        from cryptopred_training.retrain.scheduler import stop_scheduler

        if self.sources:
            self.say("stopping the trade sources ...")
        for actor in self.sources:
            try:
                ray.get(actor.stop.remote(), timeout=30)
                ray.kill(actor)
            except Exception as exc:  # already gone: nothing to stop
                self.say(f"source: {type(exc).__name__}")
        self.sources.clear()
        if stop_scheduler():
            self.say("stopped the retraining scheduler")
        stop_pipeline(self.stream, say=self.say)
        if self.base_url:
            self.say("deleting the Serve app ...")
            delete_app(self.serve)
            self.base_url = None
