"""The stages of the streaming pipeline, by name, and how to build each from settings."""

from __future__ import annotations

from collections.abc import Callable

from cryptopred_core import topics
from cryptopred_core.pipeline.stage import Stage
from cryptopred_core.retry import DbCalls
from cryptopred_ingest.stream.candles import CandleStage, PostgresCandleState
from cryptopred_ingest.stream.indicator_stage import IndicatorStage, postgres_history
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_ingest.stream.sink import SinkStage


def group_id(settings: StreamSettings, stage: str) -> str:
    """Consumer group of a stage; its replicas share it."""
    return f"{settings.group_prefix}-{stage}"


def _candles(settings: StreamSettings) -> Stage:
    return CandleStage(
        settings.db_url,
        group_id(settings, "candles"),
        settings.candle_seconds,
        settings.grace_ms,
        settings.open_emit_interval_ms,
        max_future_s=settings.trade_max_future_s,
        max_jump_s=settings.trade_max_jump_s,
        max_flat_candles=settings.max_flat_candles,
        pair_idle_evict_s=settings.pair_idle_evict_s,
        watermark_max_age_s=settings.source_watermark_max_age_s,
        state=PostgresCandleState(DbCalls.from_settings(settings), group_id(settings, "candles")),
    )


def _indicators(settings: StreamSettings) -> Stage:
    return IndicatorStage(
        settings.db_url,
        settings.indicator_history,
        series_idle_evict_s=settings.pair_idle_evict_s,
        read_history=postgres_history(DbCalls.from_settings(settings)),
    )


def _sink(settings: StreamSettings) -> Stage:
    # the indicator stage upserts its final rows itself; only postgres upserts can keep a late
    # open row from replacing them, so on risingwave the sink writes every row again
    finals = (topics.TECHNICAL_INDICATORS,) if settings.db_dialect == "postgres" else ()
    return SinkStage(upstream_finals=finals)


# pipeline order: upstream first
_FACTORIES: dict[str, Callable[[StreamSettings], Stage]] = {
    "candles": _candles,
    "indicators": _indicators,
    "sink": _sink,
}

STAGES = tuple(_FACTORIES)


def build_stage(name: str, settings: StreamSettings) -> Stage:
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; expected one of {STAGES}") from None
    return factory(settings)


def uses_db(name: str) -> bool:
    """Every stage writes rows (checkpoints, history or sink rows) before committing."""
    return name in _FACTORIES
