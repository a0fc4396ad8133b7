"""Ingest knobs on top of the platform settings (same `CRYPTOPRED_` env prefix)."""

from __future__ import annotations

from pydantic import Field, ValidationError

from cryptopred_core.settings import Settings, SettingsError, describe_error


class IngestSettings(Settings):
    """Settings of the trade sources: exchange addresses, backoff, watchdog, pacing."""

    kraken_ws_url: str = Field("wss://ws.kraken.com/v2", description="Kraken WS v2 endpoint")
    kraken_rest_url: str = Field("https://api.kraken.com", description="Kraken REST base URL")
    kraken_snapshot: bool = Field(False, description="ask the trade channel for a snapshot")
    backoff_initial_s: float = Field(1.0, gt=0, description="first reconnect delay")
    backoff_max_s: float = Field(60.0, gt=0, description="largest reconnect delay")
    backoff_jitter: float = Field(0.2, ge=0, le=1, description="relative jitter of each delay")
    watchdog_s: float = Field(15.0, gt=0, description="reconnect after this long without data")
    rest_timeout_s: float = Field(10.0, gt=0, description="timeout of one REST call")
    rest_min_interval_s: float = Field(1.0, ge=0, description="pause between REST calls")
    rest_page_size: int = Field(1000, ge=1, description="trades per full REST Trades page")
    rest_max_retries: int = Field(8, ge=0, description="retries of a rate-limited REST call")
    live_checkpoint_s: float = Field(5.0, gt=0, description="how often live saves last-seen")
    live_watermarks: bool = Field(
        True, description="live writes source watermarks (table source_watermarks)"
    )
    watermark_interval_s: float = Field(
        1.0, gt=0, description="how often live flushes and writes its source watermarks"
    )
    watermark_lag_ms: int = Field(
        2000,
        ge=0,
        description="a source watermark trails the last message's arrival by this (feed latency)",
    )
    silence_repair_s: float = Field(
        2.0,
        gt=0,
        description="a message after a longer silence first has every pair repaired from REST",
    )
    gap_repair_attempts: int = Field(
        3, ge=1, description="REST passes for the ids of a jump in a pair's trade ids"
    )
    actor_max_restarts: int = Field(-1, ge=-1, description="Ray actor restarts (-1: forever)")
    source_resource: str = Field(
        "",
        description=(
            "custom Ray resource a source actor asks one unit of ('': none); on the cluster only "
            "the pipeline head offers it, so sources and their state files stay there"
        ),
    )


def load_ingest_settings(**overrides: object) -> IngestSettings:
    """Build IngestSettings; raise SettingsError with one line naming a bad setting."""
    try:
        return IngestSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_error(exc)) from None
