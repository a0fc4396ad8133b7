"""Where a process joins Ray (decided without starting it), and the environment a Ray
started here gets for Serve's HTTP ingress."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

import pytest

from cryptopred_core.ports import ephemeral_port_range, free_listen_port, port_in_use
from cryptopred_core.raycluster import (
    RAY_JOB_ENVIRONMENT,
    NoRayClusterError,
    choose_ray_address,
    connect_ray,
    gcs_answers,
    keep_workers_in_this_env,
    one_unit_of,
    serve_ingress_env,
    serve_ingress_environ,
    serve_run_dir,
    stop_haproxy,
)
from cryptopred_core.settings import Settings, SettingsError, load_settings
from cryptopred_testsupport.haproxy import start_haproxy


@pytest.fixture(autouse=True)
def _no_ray_serve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("RAY_SERVE_")]:
        monkeypatch.delenv(key)


def test_haproxy_is_the_default_with_its_files_and_ports_apart(tmp_path: Path) -> None:
    env = serve_ingress_env(load_settings(), tmp_path)
    other = serve_ingress_env(load_settings(), tmp_path)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HAPROXY_SOCKET_PATH"] == str(tmp_path / "admin.sock")
    for key in ("CONFIG_FILE_LOC", "SERVER_STATE_BASE", "SERVER_STATE_FILE", "METRICS_SOCKET_PATH"):
        assert env[f"RAY_SERVE_HAPROXY_{key}"].startswith(str(tmp_path))
    ports = [
        "RAY_SERVE_HAPROXY_STATS_PORT",
        "RAY_SERVE_HAPROXY_METRICS_PORT",
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
    ]
    for key in ports:  # free ports, not Ray's fixed 8404/9101/8500
        assert 1024 < int(env[key]) < 65536
    assert len({env[k] for k in ports}) == 3
    assert {env[k] for k in ports} != {other[k] for k in ports}
    assert env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "5"


def test_proxy_ingress_turns_haproxy_off(tmp_path: Path) -> None:
    settings = load_settings(serve_ingress="proxy")
    assert serve_ingress_env(settings, tmp_path) == {
        "RAY_SERVE_ENABLE_HA_PROXY": "0",
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    }


def test_variables_already_set_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_SERVE_HAPROXY_STATS_PORT", "18404")
    env = serve_ingress_env(load_settings(serve_drain_s=0.5), tmp_path)
    assert "RAY_SERVE_HAPROXY_STATS_PORT" not in env
    assert env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "0.5"


def test_environ_is_restored_after_ray_starts(tmp_path: Path) -> None:
    with serve_ingress_environ(load_settings(), tmp_path) as env:
        assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert not [key for key in env if key in os.environ]


def test_run_dir_leaves_room_for_haproxy_socket_paths() -> None:
    assert not serve_run_dir("65535", make=False).exists()  # make=False only names it
    path = serve_run_dir("65535")
    try:
        assert len(f"{path}/{'0' * 56}/metrics.sock") <= 97
        assert path.is_dir()
    finally:
        path.rmdir()


def test_bad_ingress_fails_with_one_line() -> None:
    with pytest.raises(SettingsError, match="CRYPTOPRED_SERVE_INGRESS") as info:
        load_settings(serve_ingress="nginx")
    assert "\n" not in str(info.value)


def test_haproxy_ports_are_free_and_outside_the_ephemeral_range(tmp_path) -> None:
    """They are bound only when Serve starts: an outgoing connection must not take one first."""
    low, high = ephemeral_port_range()
    env = serve_ingress_env(load_settings(serve_ingress="haproxy"), tmp_path)
    for name in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT"):
        port = int(env[name])
        assert not low <= port <= high, (name, port)
        with socket.socket() as sock:
            sock.bind(("0.0.0.0", port))


def test_free_listen_port_skips_a_taken_port(monkeypatch) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        port = taken.getsockname()[1]
        monkeypatch.setattr(random, "sample", lambda ports, k: [port, *list(ports)[:3]])
        assert free_listen_port() != port


def test_stop_haproxy_ends_only_the_one_under_its_run_dir(tmp_path: Path) -> None:
    ours, ours_port = start_haproxy(tmp_path / "ours")
    theirs, theirs_port = start_haproxy(tmp_path / "theirs")
    try:
        assert stop_haproxy(tmp_path / "ours", timeout_s=5) == [ours.pid]
        assert ours.wait(timeout=5) is not None
        assert not port_in_use("127.0.0.1", ours_port)
        assert theirs.poll() is None and port_in_use("127.0.0.1", theirs_port)
        assert stop_haproxy(tmp_path / "ours") == []  # nothing left: a no-op
    finally:
        for proc in (ours, theirs):
            proc.kill()
            proc.wait(timeout=5)


def test_workers_stay_in_this_env_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", raising=False)
    keep_workers_in_this_env()
    assert os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] == "0"
    monkeypatch.setenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "1")
    keep_workers_in_this_env()
    assert os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] == "1"


@pytest.mark.parametrize(
    ("ray_address", "environ", "answers", "expected"),
    [
        ("10.0.0.5:6379", {"RAY_ADDRESS": "10.0.0.1:6379"}, True, "10.0.0.5:6379"),
        ("ray://head:10001", {}, False, "ray://head:10001"),
        ("auto", {}, False, "auto"),
        (None, {"RAY_ADDRESS": "10.0.0.1:6379"}, False, "auto"),
        (None, {"RAY_JOB_ID": "02000000"}, False, "auto"),
        (None, {"RAY_ADDRESS": ""}, True, "127.0.0.1:6399"),
        (None, {}, True, "127.0.0.1:6399"),
        (None, {}, False, None),
    ],
    ids=[
        "explicit-wins",
        "client",
        "auto",
        "ray-address",
        "job",
        "empty-env",
        "embedded",
        "local",
    ],
)
def test_the_address_rule(
    ray_address: str | None, environ: dict[str, str], answers: bool, expected: str | None
) -> None:
    settings = Settings(ray_address=ray_address, ray_port=6399)
    probed: list[str] = []

    def probe(address: str) -> bool:
        probed.append(address)
        return answers

    assert choose_ray_address(settings, environ, probe) == expected
    asks_the_head = ray_address is None and not any(environ.values())
    assert probed == (["127.0.0.1:6399"] if asks_the_head else [])


def test_the_probe_tells_a_listener_from_a_closed_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        assert gcs_answers(address)
    assert not gcs_answers(address)
    assert not gcs_answers("no-port")


@pytest.mark.usefixtures("outside_ray")
def test_connect_ray_refuses_when_no_cluster_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in RAY_JOB_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    settings = Settings(ray_address=None, ray_port=free_listen_port())
    refusal = r"no Ray cluster answers at 127\.0\.0\.1:\d+; start the stack"
    with pytest.raises(NoRayClusterError, match=refusal):
        connect_ray(settings, log_to_driver=False)


def test_one_unit_of_a_named_resource_and_nothing_for_none() -> None:
    assert one_unit_of("stage") == {"stage": 1.0}
    assert one_unit_of("") == {}
