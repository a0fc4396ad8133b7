"""Ray's token and addresses for the embedded stack, HAProxy's listeners, generated secrets."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from cryptopred_core import raycluster
from cryptopred_core.credentials import read_or_create_secret, write_private
from cryptopred_core.raycluster import (
    embedded_ray_env,
    prepare_ray_auth,
    serve_ingress_env,
    write_haproxy_launcher,
)
from cryptopred_core.settings import Settings

RAY_VARS = (
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN",
    "RAY_AUTH_TOKEN_PATH",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
)


@pytest.fixture
def clean_ray_env(monkeypatch):
    for name in RAY_VARS:
        monkeypatch.delenv(name, raising=False)


def test_the_embedded_ray_uses_a_token_under_the_data_dir_and_loopback(tmp_path):
    env = embedded_ray_env(Settings(data_dir=tmp_path))
    assert env == {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(tmp_path / "ray" / "auth_token"),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    # on another interface Ray must keep its multi-node addressing
    wide = embedded_ray_env(Settings(data_dir=tmp_path, bind_host="10.1.2.3"))
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in wide


def test_a_driver_of_the_embedded_stack_gets_its_token(tmp_path, clean_ray_env):
    prepare_ray_auth(Settings(data_dir=tmp_path))
    token = tmp_path / "ray" / "auth_token"
    assert os.environ["RAY_AUTH_MODE"] == "token"
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == str(token)
    assert len(token.read_text()) == 64
    assert token.stat().st_mode & 0o777 == 0o600
    assert token.parent.stat().st_mode & 0o777 == 0o700
    first = token.read_text()
    prepare_ray_auth(Settings(data_dir=tmp_path))
    assert token.read_text() == first  # generated once, then reused


def test_an_inherited_token_wins(tmp_path, monkeypatch, clean_ray_env):
    """A job's entry point inherits its head's token; it must not make its own."""
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/elsewhere/auth_token")
    prepare_ray_auth(Settings(data_dir=tmp_path / "job"))
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == "/elsewhere/auth_token"
    assert not (tmp_path / "job").exists()


def test_a_cluster_given_by_address_keeps_rays_own_rules(tmp_path, monkeypatch, clean_ray_env):
    monkeypatch.setenv("HOME", str(tmp_path))
    prepare_ray_auth(Settings(data_dir=tmp_path / "data", ray_address="10.0.0.5:6379"))
    assert "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN_PATH" not in os.environ
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t")
    prepare_ray_auth(Settings(data_dir=tmp_path / "data", ray_address="10.0.0.5:6379"))
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_haproxy_stats_and_metrics_bind_the_bind_host(tmp_path, monkeypatch):
    monkeypatch.setattr(raycluster, "haproxy_binary", lambda: "/bin/echo")
    config = tmp_path / "0123" / "haproxy.cfg"
    config.parent.mkdir()
    config.write_text(
        "frontend prometheus\n    bind :9101\n    mode http\n"
        "frontend http_frontend\n    bind 127.0.0.1:8000\n"
        "listen stats\n  bind *:8404\n  stats enable\n"
    )
    launcher = write_haproxy_launcher(tmp_path, "127.0.0.1")
    assert launcher is not None
    done = subprocess.run([str(launcher), "-db", "-f", str(config)], capture_output=True, text=True)
    assert done.returncode == 0 and shlex.split(done.stdout) == ["-db", "-f", str(config)]
    binds = [line.split()[1] for line in config.read_text().splitlines() if "bind" in line]
    assert binds == ["127.0.0.1:9101", "127.0.0.1:8000", "127.0.0.1:8404"]


def test_serve_starts_the_launcher_instead_of_haproxy(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("RAY_SERVE_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(raycluster, "haproxy_binary", lambda: "/usr/sbin/haproxy")
    env = serve_ingress_env(Settings(data_dir=tmp_path), tmp_path)
    launcher = Path(env["RAY_SERVE_HAPROXY_BINARY_PATH"])
    assert launcher.parent == tmp_path and os.access(launcher, os.X_OK)
    assert "exec /usr/sbin/haproxy" in launcher.read_text()
    monkeypatch.setattr(raycluster, "haproxy_binary", lambda: None)
    assert "RAY_SERVE_HAPROXY_BINARY_PATH" not in serve_ingress_env(Settings(), tmp_path)


def test_secrets_are_owner_only_and_stable(tmp_path):
    path = tmp_path / "secrets" / "one"
    first = read_or_create_secret(path)
    assert len(first) == 64 and read_or_create_secret(path) == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    write_private(tmp_path / "secrets" / "pgpass", "*:*:*:postgres:x\n")
    assert (tmp_path / "secrets" / "pgpass").stat().st_mode & 0o777 == 0o600
