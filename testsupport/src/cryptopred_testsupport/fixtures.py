"""Session-scoped real services for integration tests: tansu, PostgreSQL, MLflow and Ray.

Each is started at most once per test session, on free loopback ports, with its data in a
temporary folder, and stopped by its pid at the end. Unit tests never request these.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cryptopred.stack.parts import Broker, Mlflow, Postgres
from cryptopred_core.ports import free_port
from cryptopred_core.raycluster import (
    keep_workers_in_this_env,
    remove_serve_run_dir,
    secure_local_ray,
    serve_ingress_environ,
)
from cryptopred_core.settings import Settings

SHARED_DIR = Path(__file__).resolve().parents[3].parent / "shared"


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def base_settings(stack_dir: Path) -> Settings:
    """Settings pointing at loopback ports no user stack is using."""
    return Settings(
        data_dir=stack_dir,
        broker_port=free_port(),
        postgres_port=free_port(),
        mlflow_port=free_port(),
        ray_port=free_port(),
        ray_dashboard_port=free_port(),
    )


@pytest.fixture(scope="session")
def broker(base_settings: Settings) -> Iterator[Settings]:
    """A real tansu broker; yields settings whose `bootstrap_servers` reach it."""
    part = Broker(base_settings)
    part.start()
    try:
        yield base_settings.model_copy(update={"kafka_bootstrap": part.address})
    finally:
        part.stop()


@pytest.fixture(scope="session")
def postgres(base_settings: Settings) -> Iterator[Settings]:
    """A real embedded PostgreSQL with the schema; yields settings whose `db_url` reach it."""
    from cryptopred_core.db import connect, create_schema

    part = Postgres(base_settings)
    part.start()
    try:
        settings = base_settings.model_copy(update={"database_url": part.address})
        with connect(settings.db_url) as conn:
            create_schema(conn, "postgres")
        yield settings
    finally:
        part.stop()


@pytest.fixture(scope="session")
def mlflow_server(base_settings: Settings) -> Iterator[Settings]:
    """A real MLflow tracking server (sqlite, local artifacts under the session's temp dir);
    yields settings whose `mlflow_uri` reach it."""
    part = Mlflow(base_settings)
    part.start()
    try:
        yield base_settings.model_copy(update={"mlflow_tracking_uri": part.address})
    finally:
        part.stop()


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module imports ray: workers in this environment (`make test` runs
    pytest under `uv run`), and a local Ray authenticated by a token of this session only,
    listening on 127.0.0.1 (never `~/.ray/auth_token`, which would turn authentication on for
    the user's own clusters)."""
    keep_workers_in_this_env()
    secure_local_ray(Path(tempfile.mkdtemp(prefix="cryptopred-test-ray-")))


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """One local Ray cluster shared by every Ray test of the session."""
    import ray

    # The Serve ingress users get by default (HAProxy), set up as the embedded head does.
    # short, under /tmp: see serve_run_dir
    run_dir = Path(tempfile.mkdtemp(prefix="cryptopred-", dir="/tmp"))
    with serve_ingress_environ(Settings(), run_dir):
        # address="local": never join a cluster some other process left in /tmp/ray
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        yield ray
    finally:
        ray.shutdown()
        remove_serve_run_dir(run_dir)  # with HAProxy, when a test did not shut Serve down


@pytest.fixture
def outside_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test sees a process that has not joined Ray, even where an earlier test of the
    session connected it (`connect_ray` keeps an existing connection)."""

    loaded = sys.modules.get("ray")
    if loaded is not None:
        monkeypatch.setattr(loaded, "is_initialized", lambda: False)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the checkout; tests that need it skip where it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is absent (it exists only beside the development checkout)")
    return SHARED_DIR
