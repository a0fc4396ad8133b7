"""DemoSettings: the platform Settings plus what the demo runs (`CRYPTOPRED_DEMO_*`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import NoDecode

from cryptopred_core.settings import (
    Settings,
    SettingsError,
    _split_csv,
    check_pairs,
    describe_error,
)

DemoSource = Literal["kraken", "synthetic"]
HISTORY_DAYS: dict[str, float] = {"kraken": 1.0, "synthetic": 7.0}


class DemoSettings(Settings):
    """Env var = `CRYPTOPRED_` + field name in capitals, e.g. CRYPTOPRED_DEMO_SOURCE."""

    demo_source: DemoSource = Field(
        "kraken", description="kraken (REST backfill, then WS live) or synthetic (offline)"
    )
    demo_pairs: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["BTC/USD", "ETH/USD"], description="pairs the demo runs"
    )
    demo_history_days: float | None = Field(
        None, gt=0, le=30, description="history to load first (default: kraken 1, synthetic 7)"
    )
    demo_seed: int = Field(0, description="seed of the synthetic generator")
    demo_momentum: float = Field(
        0.4, ge=-0.99, le=0.99, description="synthetic minute-return AR(1) drift (0: random walk)"
    )
    demo_history_timeout_s: float = Field(
        1800.0, gt=0, description="how long the history may take to reach the DB"
    )
    demo_refresh_s: float = Field(2.0, gt=0, description="status view refresh interval")

    @field_validator("demo_pairs", mode="before")
    @classmethod
    def _pairs_from_csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("demo_pairs")
    @classmethod
    def _pairs_well_formed(cls, value: list[str]) -> list[str]:
        return check_pairs(value)

    @property
    def history_days(self) -> float:
        return self.demo_history_days or HISTORY_DAYS[self.demo_source]


def load_demo_settings(**overrides: object) -> DemoSettings:
    """Build DemoSettings; raise SettingsError with one line naming a bad setting."""
    try:
        return DemoSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_error(exc)) from None
