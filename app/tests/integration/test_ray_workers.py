"""Ray workers run on the driver's interpreter and code, also when the driver runs under
`uv run` (`make test`, `make demo`): no working-dir copy with a second virtual environment."""

import sys
from pathlib import Path

import psutil
import pytest

import cryptopred

pytestmark = pytest.mark.integration


def test_workers_use_this_environment(ray_session):
    ray = ray_session

    @ray.remote
    def where() -> tuple[str, str, list[str]]:
        return (
            sys.executable,
            str(Path(cryptopred.__file__).resolve()),
            psutil.Process().parent().cmdline(),
        )

    executable, package, parent = ray.get(where.remote(), timeout=120)
    assert executable == sys.executable
    assert package == str(Path(cryptopred.__file__).resolve())
    assert not parent or Path(parent[0]).name != "uv"  # no `uv run` wrapper per worker
