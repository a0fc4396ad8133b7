"""`cryptopred stream`: with no Ray cluster to join, each command says so in one line and exits 1
(nothing here starts Ray: the address rule finds no head listening)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cryptopred_core.ports import free_listen_port
from cryptopred_core.raycluster import RAY_JOB_ENVIRONMENT
from cryptopred_ingest.stream_cli import app


@pytest.mark.usefixtures("outside_ray")
@pytest.mark.parametrize("command", ["status", "stop"])
def test_no_cluster_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    for name in RAY_JOB_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    for name in ("CRYPTOPRED_RAY_ADDRESS", "CRYPTOPRED_BIND_HOST"):
        monkeypatch.delenv(name, raising=False)
    port = free_listen_port()
    monkeypatch.setenv("CRYPTOPRED_RAY_PORT", str(port))
    result = CliRunner().invoke(app, [command])
    assert result.exit_code == 1
    assert result.output == (
        f"error: ray: no Ray cluster answers at 127.0.0.1:{port}; start the stack with "
        "`cryptopred up`\n"
    )
