"""The prediction publisher's stage: final indicator rows in → predictions and outcomes out.

For every final row of a served (pair, candle_seconds) it predicts every horizon with the
current champion, emits the predictions to Kafka `predictions` (key pair) and the DB, and scores
earlier predictions whose target candle this row realises into `prediction_outcomes`. The
runner commits offsets only after both the Kafka acks and the DB commit.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from cryptopred import tables, topics
from cryptopred.db import connect
from cryptopred.pipeline.stage import Emit, Inbound, Stage
from cryptopred.records import IndicatorRow, Prediction, RecordError, decode, to_dict
from cryptopred_serving import queries
from cryptopred_serving.champions import Champion
from cryptopred_serving.outcomes import score

log = logging.getLogger(__name__)

PredictFn = Callable[[Champion, list[dict[str, Any]]], list[dict[str, Any]]]
ChampionFn = Callable[[str, int], Champion | None]


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
        history_rows: int = 512,
    ) -> None:
        self.db_url = db_url
        self.served = served
        self.champion_of = champion_of
        self.predict = predict
        self.history_rows = history_rows
        self._rows: dict[tuple[str, int], deque[IndicatorRow]] = {}
        self._next: dict[tuple[str, int], int] = {}
        self._last_event_ms: int | None = None
        self.skipped_no_champion = 0
        # predictions made but maybe not committed to the DB yet, by (pair, width, target)
        self._pending: dict[tuple[str, int, int], list[Prediction]] = {}

    def _history(self, row: IndicatorRow) -> deque[IndicatorRow]:
        """The rows before `row` of its series; read from the DB the first time."""
        key = (row.pair, row.candle_seconds)
        rows = self._rows.get(key)
        if rows is None:
            with connect(self.db_url) as conn:
                stored = queries.recent_indicator_rows(
                    conn, row.pair, row.candle_seconds, self.history_rows
                )
            earlier = [IndicatorRow(**r) for r in stored]
            rows = self._rows[key] = deque(
                (r for r in earlier if r.window_start_ms < row.window_start_ms),
                maxlen=self.history_rows,
            )
        return rows

    def handle(self, message: Inbound, now_ms: int, out: Emit) -> None:
        self._next[(message.topic, message.partition)] = message.offset + 1
        try:
            row = decode(message.value, IndicatorRow)
        except RecordError as exc:
            out.dead_letter(self.name, exc.reason, message.value, now_ms)
            return
        if not row.final or (row.pair, row.candle_seconds) not in self.served:
            return
        history = self._history(row)
        if history and row.window_start_ms <= history[-1].window_start_ms:
            return  # a replayed row: already predicted on
        history.append(row)
        self._last_event_ms = max(self._last_event_ms or 0, row.window_end_ms)
        self._score(row, now_ms, out)
        champion = self.champion_of(row.pair, row.candle_seconds)
        if champion is None:
            self.skipped_no_champion += 1
            return
        if len(history) < champion.window_steps:
            return
        window = [to_dict(r) for r in list(history)[-champion.window_steps :]]
        for forecast in self.predict(champion, window):
            prediction = Prediction(
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
            out.record(topics.PREDICTIONS, prediction.pair, prediction)
            out.row(tables.PREDICTIONS, prediction)
            target = (prediction.pair, prediction.candle_seconds, prediction.target_ts_ms)
            self._pending.setdefault(target, []).append(prediction)

    def _score(self, row: IndicatorRow, now_ms: int, out: Emit) -> None:
        """Outcomes of the predictions whose target time is this row's window end."""
        pending = self._pending.pop((row.pair, row.candle_seconds, row.window_end_ms), [])
        with connect(self.db_url) as conn:
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
                out.row(tables.PREDICTION_OUTCOMES, score(prediction, base, row.close, now_ms))

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

    def revoke(self, partitions: list[tuple[str, int]]) -> None:
        self._rows.clear()
        self._pending.clear()
        for tp in partitions:
            self._next.pop(tp, None)

    def last_event_ms(self) -> int | None:
        return self._last_event_ms


def _key(p: Prediction) -> tuple[int, int, str, str]:
    return (p.horizon_seconds, p.window_end_ms, p.model_name, p.model_version)
