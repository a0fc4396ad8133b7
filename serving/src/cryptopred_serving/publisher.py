"""The prediction publisher's stage: final indicator rows in → predictions and outcomes out.

For every final row of a served (pair, candle_seconds) it predicts every horizon with the
current champion, emits the predictions to Kafka `predictions` (key pair) and the DB, and scores
earlier predictions whose target candle this row realises into `prediction_outcomes`. The
runner commits offsets only after both the Kafka acks and the DB commit.

Each outcome carries its pinball loss and, when the registry's `baseline` alias points at
another version, that baseline's pinball loss for the same window, forecast from the rows kept
in memory. The outcomes of the champion go to a `CalibrationMonitor`; its demotion decisions
are handed to `demote` (which carries them out off this thread).

After a restart the runner replays from the last committed offset, so rows whose predictions
were already shipped come again. Nothing is published twice: a row at or before the last
prediction of its series in the DB (committed, hence also acknowledged by Kafka) is only kept as
history; for a later row, predictions already in the tail of the `predictions` topic (shipped
in the cycle that died before its DB commit) are written to the DB as published instead of
being predicted and sent again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from confluent_kafka import TopicPartition

from cryptopred_core import tables, topics
from cryptopred_core.db import connect
from cryptopred_core.kafka import make_consumer
from cryptopred_core.pipeline.resume import ResumePoint
from cryptopred_core.pipeline.stage import Emit, Inbound, Stage
from cryptopred_core.records import (
    IndicatorRow,
    Prediction,
    PredictionOutcome,
    RecordError,
    decode,
    to_dict,
)
from cryptopred_core.settings import Settings
from cryptopred_serving import queries
from cryptopred_serving.calibration import CalibrationMonitor, Demotion
from cryptopred_serving.champion_watch import Champion
from cryptopred_serving.outcomes import pinball_price, score

log = logging.getLogger(__name__)

PredictFn = Callable[[Champion, list[dict[str, Any]]], list[dict[str, Any]]]
ChampionFn = Callable[[str, int], Champion | None]
PublishedFn = Callable[[], Iterable[Prediction]]
DemoteFn = Callable[[Demotion], object]
SeriesKey = tuple[str, int]  # (pair, candle_seconds)
BASELINE_CACHE_WINDOWS = 256  # baseline forecasts kept, by window (each serves every horizon)
BASELINE_RETRY_S = 300.0  # a baseline version that failed to forecast is skipped this long


class PublisherStage(Stage):
    """Predicts on each final indicator row; keeps the last rows per series in memory."""

    name = "publisher"
    topics = (topics.TECHNICAL_INDICATORS,)

    def __init__(
        self,
        db_url: str,
        served: set[tuple[str, int]],
        champion_of: ChampionFn,
        predict: PredictFn,
        history_rows: int = 1024,
        published: PublishedFn | None = None,
        max_age_ms: int | None = None,
        baseline_of: ChampionFn | None = None,
        monitor: CalibrationMonitor | None = None,
        demote: DemoteFn | None = None,
    ) -> None:
        self.db_url = db_url
        self.max_age_ms = max_age_ms  # older rows are history only, not predicted on
        self.skipped_old = 0
        self.served = served
        self.champion_of = champion_of
        self.predict = predict
        self.history_rows = history_rows
        self.published_fn = published
        self._rows: dict[SeriesKey, deque[IndicatorRow]] = {}
        # per series: window_end_ms of the last prediction in the DB when the series was loaded
        self._done: dict[SeriesKey, int] = {}
        # predictions in the topic's tail at assignment, by (pair, width, window_end) and horizon
        self._published: dict[tuple[str, int, int], dict[int, Prediction]] = {}
        self.skipped_done = 0
        self.reused_published = 0
        self._next: dict[tuple[str, int], int] = {}
        self._last_event_ms: int | None = None
        self.skipped_no_champion = 0
        # predictions made but maybe not committed to the DB yet, by (pair, width, target)
        self._pending: dict[tuple[str, int, int], list[Prediction]] = {}
        self._conn: psycopg.Connection | None = None
        self.baseline_of = baseline_of
        self.monitor = monitor
        self.demote = demote
        self.demotions: list[Demotion] = []
        # baseline forecasts by (pair, width, window_end, model id), then horizon
        self._baseline: dict[tuple[str, int, int, str], dict[int, dict[str, Any]] | None] = {}
        self._baseline_failed: dict[str, float] = {}  # model id -> monotonic time of failure

    @contextmanager
    def _db(self) -> Iterator[psycopg.Connection]:
        """The stage's one connection for its reads (autocommit: each sees the latest
        commits), kept between rows; closed on an error, so the next use reconnects."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.db_url, autocommit=True)
        try:
            yield self._conn
        except psycopg.Error:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _history(self, row: IndicatorRow) -> deque[IndicatorRow]:
        """The rows before `row` of its series; read from the DB the first time."""
        key = (row.pair, row.candle_seconds)
        rows = self._rows.get(key)
        if rows is None:
            with self._db() as conn:
                stored = queries.recent_indicator_rows(
                    conn, row.pair, row.candle_seconds, self.history_rows
                )
                self._done[key] = queries.last_prediction_window(conn, row.pair, row.candle_seconds)
            earlier = [IndicatorRow(**r) for r in stored]
            rows = self._rows[key] = deque(
                (r for r in earlier if r.window_start_ms < row.window_start_ms),
                maxlen=self.history_rows,
            )
        return rows

    def handle(self, message: Inbound, now_ms: int, out: Emit) -> None:
        self._next[(message.topic, message.partition)] = message.offset + 1
        row = self.decode_or_dead_letter(message, IndicatorRow, now_ms, out)
        if row is None:
            return
        if not row.final or (row.pair, row.candle_seconds) not in self.served:
            return
        history = self._history(row)
        if history and row.window_start_ms <= history[-1].window_start_ms:
            return  # a replayed row: already predicted on
        history.append(row)
        self._last_event_ms = max(self._last_event_ms or 0, row.window_end_ms)
        if row.window_end_ms <= self._done.get((row.pair, row.candle_seconds), -1):
            self.skipped_done += 1  # predicted, published and committed before a restart
            return
        if self.max_age_ms is not None and row.window_end_ms < now_ms - self.max_age_ms:
            self.skipped_old += 1  # history only: nothing predicted on it, so nothing to score
            return
        self._score(row, now_ms, out)
        champion = self.champion_of(row.pair, row.candle_seconds)
        if champion is None:
            self.skipped_no_champion += 1
            return
        if len(history) < champion.window_steps:
            return
        published = self._published.pop((row.pair, row.candle_seconds, row.window_end_ms), {})
        predictions = list(published.values())
        self.reused_published += len(predictions)
        if not published or not set(champion.horizon_seconds) <= published.keys():
            # the window and the row before it (its close is the first row's previous close)
            window = [to_dict(r) for r in list(history)[-(champion.window_steps + 1) :]]
            for forecast in self.predict(champion, window):
                if int(forecast["horizon_seconds"]) in published:
                    continue
                prediction = _prediction(row, champion, forecast, now_ms)
                out.record(topics.PREDICTIONS, prediction.pair, prediction)
                predictions.append(prediction)
        for prediction in predictions:
            out.row(tables.PREDICTIONS, prediction)
            target = (prediction.pair, prediction.candle_seconds, prediction.target_ts_ms)
            self._pending.setdefault(target, []).append(prediction)

    def _score(self, row: IndicatorRow, now_ms: int, out: Emit) -> None:
        """Outcomes of the predictions whose target time is this row's window end."""
        pending = self._pending.pop((row.pair, row.candle_seconds, row.window_end_ms), [])
        with self._db() as conn:
            stored = queries.predictions_targeting(
                conn, row.pair, row.candle_seconds, row.window_end_ms
            )
            by_key = {_key(p): p for p in [*(Prediction(**r) for r in stored), *pending]}
            for prediction in by_key.values():
                base = self._close_at(row, prediction.window_end_ms)
                if base is None:
                    base = queries.candle_close(
                        conn, row.pair, row.candle_seconds, prediction.window_end_ms
                    )
                if base is None:
                    log.warning("no close at %s for %s", prediction.window_end_ms, row.pair)
                    continue
                baseline = self._baseline_loss(row, prediction)
                outcome = score(prediction, base, row.close, now_ms, baseline)
                out.row(tables.PREDICTION_OUTCOMES, outcome)
                self._monitor(outcome)

    def _monitor(self, outcome: PredictionOutcome) -> None:
        """Feed the champion's outcome to the monitor; hand a demotion over to `demote`."""
        if self.monitor is None:
            return
        decision = self.monitor.observe(
            outcome, self.champion_of(outcome.pair, outcome.candle_seconds)
        )
        if decision is None:
            return
        log.warning("demoting %s %s: %s", decision.model_name, decision.model_version, decision)
        self.demotions.append(decision)
        if self.demote is not None:
            self.demote(decision)

    def _baseline_loss(self, row: IndicatorRow, prediction: Prediction) -> tuple[str, float] | None:
        """(version, pinball loss) of the baseline's forecast for the prediction's window and
        horizon; None without a baseline other than the prediction's version, or without the
        window's rows in memory."""
        if self.baseline_of is None:
            return None
        baseline = self.baseline_of(row.pair, row.candle_seconds)
        if baseline is None or baseline.version == prediction.model_version:
            return None
        forecasts = self._baseline_forecasts(row, baseline, prediction.window_end_ms)
        forecast = (forecasts or {}).get(prediction.horizon_seconds)
        if forecast is None:
            return None
        loss = pinball_price(
            float(forecast["lower"]),
            float(forecast["predicted_close"]),
            float(forecast["upper"]),
            row.close,
        )
        return baseline.version, loss

    def _baseline_forecasts(
        self, row: IndicatorRow, baseline: Champion, window_end_ms: int
    ) -> dict[int, dict[str, Any]] | None:
        """The baseline's forecasts by horizon for the window ending at `window_end_ms`."""
        key = (row.pair, row.candle_seconds, window_end_ms, baseline.model_id)
        if key in self._baseline:
            return self._baseline[key]
        failed_at = self._baseline_failed.get(baseline.model_id)
        if failed_at is not None and time.monotonic() - failed_at < BASELINE_RETRY_S:
            return None
        window = self._window_ending(row, window_end_ms, baseline.window_steps)
        forecasts = None
        if window is not None:
            try:
                forecasts = {int(f["horizon_seconds"]): f for f in self.predict(baseline, window)}
            except Exception as exc:  # the baseline is extra: outcomes go on without it
                log.warning("baseline %s could not forecast: %s", baseline.model_id, exc)
                self._baseline_failed[baseline.model_id] = time.monotonic()
                return None
        if len(self._baseline) >= BASELINE_CACHE_WINDOWS:
            del self._baseline[next(iter(self._baseline))]
        self._baseline[key] = forecasts
        return forecasts

    def _window_ending(
        self, row: IndicatorRow, window_end_ms: int, window_steps: int
    ) -> list[dict[str, Any]] | None:
        """The kept rows of `row`'s series up to the one ending at `window_end_ms` (the window
        and the row before it, as predictions get); None when they are not all in memory."""
        if window_steps <= 0:
            return None
        kept = list(self._rows.get((row.pair, row.candle_seconds), ()))
        ends = [r.window_end_ms for r in kept]
        try:
            last = ends.index(window_end_ms)
        except ValueError:
            return None
        if last + 1 < window_steps:
            return None
        return [to_dict(r) for r in kept[max(0, last - window_steps) : last + 1]]

    def _close_at(self, row: IndicatorRow, window_end_ms: int) -> float | None:
        """The close of the row ending at window_end_ms, from the rows kept in memory."""
        for kept in reversed(self._rows.get((row.pair, row.candle_seconds), ())):
            if kept.window_end_ms == window_end_ms:
                return kept.close
            if kept.window_end_ms < window_end_ms:
                break
        return None

    def safe_offsets(self) -> dict[tuple[str, int], int]:
        return dict(self._next)

    def assign(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], ResumePoint]:
        """Read what an earlier owner may have published without committing it to the DB."""
        self._published.clear()
        if self.published_fn is not None:
            for p in self.published_fn():
                key = (p.pair, p.candle_seconds, p.window_end_ms)
                self._published.setdefault(key, {})[p.horizon_seconds] = p
        return {}  # resume from the group's committed offsets

    def revoke(self, partitions: list[tuple[str, int]]) -> None:
        self._rows.clear()
        self._done.clear()
        self._pending.clear()
        self._baseline.clear()
        for tp in partitions:
            self._next.pop(tp, None)

    def last_event_ms(self) -> int | None:
        return self._last_event_ms


def _key(p: Prediction) -> tuple[int, int, str, str]:
    return (p.horizon_seconds, p.window_end_ms, p.model_name, p.model_version)


def _prediction(
    row: IndicatorRow, champion: Champion, forecast: dict[str, Any], now_ms: int
) -> Prediction:
    return Prediction(
        pair=row.pair,
        candle_seconds=row.candle_seconds,
        horizon_seconds=int(forecast["horizon_seconds"]),
        window_end_ms=int(forecast["window_end_ms"]),
        target_ts_ms=int(forecast["target_ts_ms"]),
        predicted_close=float(forecast["predicted_close"]),
        predicted_return=float(forecast["predicted_return"]),
        lower=float(forecast["lower"]),
        upper=float(forecast["upper"]),
        model_name=champion.name,
        model_version=champion.version,
        created_ms=now_ms,
    )


def published_tail(
    settings: Settings, per_partition: int = 10_000, quiet_s: float = 0.5, timeout_s: float = 30
) -> list[Prediction]:
    """The last `per_partition` records of every `predictions` partition (at least one
    publisher cycle's worth: 500 rows times the horizons), read without joining a group.

    tansu reports the high watermark as the base offset of the last batch + 1, so the read goes
    on past it until no record came for `quiet_s`.
    """
    consumer = make_consumer(settings, "cryptopred-publisher-tail")
    try:
        meta = consumer.list_topics(topics.PREDICTIONS, timeout=10).topics.get(topics.PREDICTIONS)
        if meta is None or meta.error is not None:
            return []
        ends: dict[int, int] = {}
        starts = []
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topics.PREDICTIONS, p), timeout=10
            )
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topics.PREDICTIONS, p, max(low, high - per_partition)))
        if not starts:
            return []
        consumer.assign(starts)
        out: list[Prediction] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = consumer.consume(5000, timeout=quiet_s)
            for msg in batch:
                if msg.error() is not None:
                    continue
                partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                if offset + 1 >= ends.get(partition, 0):
                    ends.pop(partition, None)
                try:
                    out.append(decode(msg.value() or b"", Prediction))
                except RecordError:
                    continue
            if not batch and not ends:
                return out
        log.warning("published_tail: read %d records, not quiet after %.0f s", len(out), timeout_s)
        return out
    finally:
        consumer.close()
