"""Streaming knobs on top of the platform settings (same `CRYPTOPRED_` env prefix)."""

from __future__ import annotations

from pydantic import Field, ValidationError

from cryptopred_core.settings import Settings, SettingsError, describe_error


class StreamSettings(Settings):
    """Settings of the candle, indicator and sink stages and of their Ray actors."""

    candle_replicas: int = Field(1, ge=1, description="candle actors in the consumer group")
    indicator_replicas: int = Field(1, ge=1, description="indicator actors in the group")
    sink_replicas: int = Field(1, ge=1, description="DB sink actors in the group")
    grace_ms: int = Field(5000, ge=0, description="how late (event time) a trade may arrive")
    open_emit_interval_ms: int = Field(
        250, ge=0, description="at most one open-candle update per pair and width this often"
    )
    tick_interval_ms: int = Field(
        50, ge=10, description="how often caught-up stages do wall-clock work (idle closes)"
    )
    stream_batch_size: int = Field(5000, ge=1, description="messages per consume cycle")
    indicator_history: int = Field(
        2000, ge=100, description="final rows read back to rebuild indicator handles"
    )
    trade_max_future_s: int = Field(
        300,
        ge=0,
        description="trades further than this after the wall clock go to dlq (reason future)",
    )
    trade_max_jump_s: int = Field(
        86_400,
        ge=0,
        description=(
            "trades further than this after their pair's event time, and as far from the wall "
            "clock, go to dlq (reason ahead)"
        ),
    )
    max_flat_candles: int = Field(
        10_080,
        ge=0,
        description="at most this many flat candles per width fill one gap (the latest kept)",
    )
    pair_idle_evict_s: int = Field(
        3_600,
        ge=1,
        description=(
            "pairs (candle stage) and series (indicator stage) idle this long (wall time) "
            "leave memory; their state is read back from the DB when they trade again"
        ),
    )
    source_watermark_max_age_s: int = Field(
        600,
        ge=1,
        description="source_watermarks rows older than this no longer hold idle closing",
    )
    actor_num_cpus: float = Field(0.25, ge=0, description="CPUs reserved per stage actor")
    stage_resource: str = Field(
        "",
        description=(
            "custom Ray resource a stage actor asks one unit of ('': none); on the cluster the "
            "stages worker group offers it, so the stage actors run there and nowhere else"
        ),
    )
    ray_namespace: str = Field("cryptopred", description="Ray namespace of the named actors")
    group_prefix: str = Field("cryptopred", description="prefix of consumer group ids")


def load_stream_settings(**overrides: object) -> StreamSettings:
    """Build StreamSettings; raise SettingsError with one line naming a bad setting."""
    try:
        return StreamSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_error(exc)) from None
