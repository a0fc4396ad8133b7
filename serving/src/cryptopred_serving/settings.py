"""Serving knobs on top of the platform settings (same `CRYPTOPRED_` env prefix)."""

from __future__ import annotations

import json

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator

from cryptopred_core.settings import Settings, SettingsError, describe_error


class ServeSettings(Settings):
    """Settings of the Serve application: HTTP address, model polling, publisher, caches."""

    serve_host: str = Field(
        "127.0.0.1", description="address Serve's HTTP ingress (HAProxy or proxy) binds"
    )
    serve_port: int = Field(8000, ge=1, le=65535, description="Ray Serve HTTP port")
    serve_app_name: str = Field("cryptopred", description="Serve application name")
    model_poll_s: float = Field(5.0, gt=0, description="how often the champion alias is checked")
    latest_cache_ms: int = Field(
        250, ge=0, description="how long a latest-prediction answer may be reused"
    )
    serve_access_log: bool = Field(
        False, description="Serve's access log: a line per request in the replica logs"
    )
    publisher_enabled: bool = Field(True, description="run the streaming PredictionPublisher")
    publisher_group: str = Field("cryptopred-publisher", description="its consumer group")
    publisher_max_age_s: float | None = Field(
        None, gt=0, description="predict only rows this recent (older: history only; unset: all)"
    )
    api_replicas: int = Field(1, ge=1, description="replicas of the HTTP ingress")
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="largest request body; a larger one is answered 413 unread"
    )
    max_rows_per_request: int = Field(
        1000, ge=1, le=100_000, description="most indicator rows one POST /v1/predict may carry"
    )
    rate_limit_per_min: float = Field(
        600.0, ge=0, description="POST requests per minute per client and API replica (0: off)"
    )
    rate_limit_burst: int = Field(
        60, ge=1, description="POST requests a client may send at once before the rate applies"
    )
    api_key: SecretStr | None = Field(
        None, description="when set, POST routes need it as X-API-Key or a bearer token"
    )
    model_replicas: int = Field(1, ge=1, description="replicas of the model server")
    demotion_enabled: bool = Field(
        True,
        description="demote a champion whose live coverage or skill fails (demotion_* settings)",
    )
    demotion_coverage_low: float = Field(
        0.70, ge=0, le=1, description="lowest rolling 80 % interval coverage a champion may keep"
    )
    demotion_coverage_high: float = Field(
        0.90, ge=0, le=1, description="highest rolling 80 % interval coverage a champion may keep"
    )
    demotion_after_s: float = Field(
        1800.0, gt=0, description="how long the coverage may stay out of its band (event time)"
    )
    demotion_p_value: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="demote on negative live skill vs the baseline with a Diebold-Mariano p below",
    )
    demotion_min_outcomes: int = Field(
        60, ge=2, description="outcomes per horizon before either demotion rule applies"
    )
    demotion_window_outcomes: int = Field(
        240, ge=2, description="the rolling window of outcomes per version and horizon"
    )

    @field_validator("demotion_coverage_high")
    @classmethod
    def _band(cls, high: float, info: ValidationInfo) -> float:
        low = info.data.get("demotion_coverage_low")
        if low is not None and high <= low:
            raise ValueError(f"must be above demotion_coverage_low ({low})")
        return high

    @field_validator("demotion_window_outcomes")
    @classmethod
    def _window(cls, window: int, info: ValidationInfo) -> int:
        least = info.data.get("demotion_min_outcomes")
        if least is not None and window < least:
            raise ValueError(f"must be at least demotion_min_outcomes ({least})")
        return window


def replica_settings_json(settings: ServeSettings) -> str:
    """`settings` as JSON for the replicas, secrets in the clear (`model_dump_json` masks them)."""
    data = settings.model_dump(mode="json")
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            data[name] = value.get_secret_value()
    return json.dumps(data)


def load_serve_settings(**overrides: object) -> ServeSettings:
    """Build ServeSettings; raise SettingsError with one line naming a bad setting."""
    try:
        return ServeSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_error(exc)) from None
