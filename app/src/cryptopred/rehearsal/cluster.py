"""The stand-ins and the pods of one rehearsal: started, watched, killed, stopped."""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cryptopred.rehearsal import checks
from cryptopred.rehearsal.faults import NodeFailure, NodeKiller, list_actors
from cryptopred.rehearsal.manifest import (
    Cluster,
    Obj,
    Plan,
    ServiceMap,
    on_own_volumes,
)
from cryptopred.rehearsal.nodes import RAY_BIN, PodProcess, pod_process
from cryptopred.rehearsal.report import MIB
from cryptopred.stack.part import Part
from cryptopred.stack.parts import Broker, Mlflow, Postgres
from cryptopred.stack.process import http_ok, wait_until
from cryptopred_core.ports import free_port
from cryptopred_core.raycluster import (
    embedded_ray_env,
    ensure_ray_token,
    remove_serve_run_dir,
    serve_ingress_env,
    serve_run_dir,
)
from cryptopred_core.settings import Settings

Say = Callable[[str], None]
#: Ray's switch for multi-node clusters on one machine ("0": single-machine mode)
SINGLE_MACHINE_MODE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: passed from the caller's environment to every pod: where the exchange is
#: the containers' /tmp (a path inside the pod, not this machine's)
POD_TMP = "/tmp"  # noqa: S108
PASSED_THROUGH = ("CRYPTOPRED_KRAKEN_WS_URL", "CRYPTOPRED_KRAKEN_REST_URL")


def exchange_env() -> dict[str, str]:
    """The exchange's addresses of the caller, which replace the ConfigMap's (Kraken's): the
    exchange is the one service the rehearsal does not stand in for itself."""
    return {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}


@dataclass
class Options:
    overlay: str  # dev or prod
    workdir: Path
    #: extra env for every pod (the integration test's reduced size)
    overrides: dict[str, str] = field(default_factory=dict)
    job_timeout_s: float = 1800.0
    serve_timeout_s: float = 600.0
    sample_every_s: float = 2.0
    keep: bool = False
    #: pod name -> memory limit in bytes instead of the manifest's (a what-if; the table says so)
    memory_limits: dict[str, int] = field(default_factory=dict)
    #: the node of the stage actors lost mid-run (None: a clean run)
    node_failure: NodeFailure | None = None
    #: the node of a Serve API replica lost once Serve answers, under traffic
    serve_failure: NodeFailure | None = None
    #: the caller's own checks, run against the stand-ins (DB, broker) before they stop
    extra_checks: Callable[[Settings], list[checks.Check]] | None = None


class Rehearsal:
    """Holds every process the rehearsal started, so that `close` ends exactly those."""

    def __init__(self, options: Options, say: Say = print) -> None:
        self.options = options
        self.say = say
        self.data_dir = options.workdir / "data"
        self.settings = Settings(
            data_dir=self.data_dir,
            broker_port=free_port(),
            postgres_port=free_port(),
            mlflow_port=free_port(),
        )
        self.token = ""
        self.stand_ins: list[Part] = []
        self.pods: list[PodProcess] = []
        self.run_dirs: list[Path] = []
        self._stop_monitor = threading.Event()
        #: held while sampling, and while a job's own cluster is deleted (no restart of it)
        self._pods_lock = threading.Lock()
        self._monitor: threading.Thread | None = None
        self.cgroup_prefix = f"cryptopred-rehearsal-{os.getpid()}"
        #: pods killed as a lost node, which `tick` does not start again until revived
        self.held_down: set[str] = set()

    # --- stand-ins -----------------------------------------------------------------------

    def start_stand_ins(self) -> None:
        """The embedded broker, PostgreSQL and MLflow on a fresh data dir and free ports."""
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise RuntimeError(f"{self.data_dir} is not empty: the rehearsal starts from nothing")
        parts: list[Part] = [Broker(self.settings), Postgres(self.settings), Mlflow(self.settings)]
        launched = []
        for part in parts:
            self.say(f"stand-in {part.name}: starting")
            launched.append((part, part.launch()))
            self.stand_ins.append(part)
        for part, proc in launched:
            part.wait_ready(proc)
            self.say(f"stand-in {part.name}: up at {part.address}")
        self.token = ensure_ray_token(self.settings).read_text().strip()

    def service_map(self, plan: Plan, docs: list[Obj]) -> ServiceMap:
        s = self.settings
        hosts = {"mlflow:5000": f"127.0.0.1:{s.mlflow_port}"}
        for kafka in (d for d in docs if d.get("kind") == "Kafka"):
            hosts[f"{kafka['metadata']['name']}-kafka-bootstrap:9092"] = s.bootstrap_servers
        for pod in self.pods:
            if pod.pod.head and pod.ports.dashboard is not None:
                hosts[f"{pod.pod.cluster}-head-svc:8265"] = f"127.0.0.1:{pod.ports.dashboard}"
                hosts[f"{pod.pod.cluster}-head-svc:6379"] = f"127.0.0.1:{pod.ports.gcs}"
        # RisingWave's stand-in is PostgreSQL: its URL and dialect replace the cluster's
        values = {"CRYPTOPRED_DATABASE_URL": s.db_url, "CRYPTOPRED_DB_DIALECT": "postgres"}
        return ServiceMap(hosts, values)

    # --- pods ------------------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        """The pods' environment outside the manifest: this machine's, minus any cryptopred,
        Ray or MLflow setting of the caller, with this interpreter's tools first on PATH."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CRYPTOPRED_", "RAY_", "MLFLOW_"))
        }
        env["PATH"] = os.pathsep.join([str(RAY_BIN.parent), env.get("PATH", "")])
        return env | {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}

    def plan_pods(self, plan: Plan) -> None:
        for cluster in plan.clusters:
            for pod in cluster.pods:
                workdir = self.options.workdir / "pods" / pod.name
                limit = self.options.memory_limits.get(pod.name)
                if limit is not None:
                    self.say(
                        f"pod {pod.name}: memory limit {limit / MIB:.0f} MiB instead of the "
                        f"manifest's {pod.memory_limit_bytes / MIB:.0f} MiB"
                    )
                    pod = dataclasses.replace(pod, memory_limit_bytes=limit)
                process = pod_process(pod, {}, None, workdir, self.cgroup_prefix)
                process.usage.overridden = limit is not None
                self.pods.append(process)

    def pod_env(self, process: PodProcess, services: ServiceMap) -> dict[str, str]:
        own = self.empty_dirs(process)
        env = self.base_env() | services.apply(on_own_volumes(process.pod.env, own))
        env |= exchange_env()
        env |= embedded_ray_env(self.settings) | self.options.overrides
        if POD_TMP in process.pod.empty_dirs:
            # the pod's /tmp is its own: Ray keeps its session there (sockets, the address
            # file that "auto" reads), so a job in the pod joins the pod's cluster, not the
            # cluster another pod on this machine started last
            env["TMPDIR"] = str(process.tmp_root)
        if any(p.pod.cluster == process.pod.cluster and not p.pod.head for p in self.pods):
            # a cluster with worker pods is multi-node: Ray's single-machine mode (which the
            # embedded stack's loopback address turns on) refuses worker nodes; every pod
            # passes --node-ip-address=127.0.0.1 itself
            env.pop(SINGLE_MACHINE_MODE, None)
        if process.pod.env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
            # HAProxy's files and side ports per pod, as in the embedded stack
            run_dir = serve_run_dir(f"reh{process.ports.ray_start['metrics-export-port']}")
            self.run_dirs.append(run_dir)
            ingress = serve_ingress_env(self.settings.model_copy(), run_dir)
            env |= {k: v for k, v in ingress.items() if k not in process.pod.env}
        return env

    def start_cluster(self, cluster: Cluster, services: ServiceMap) -> None:
        procs = [p for p in self.pods if p.pod.cluster == cluster.name]
        head = next(p for p in procs if p.pod.head)
        for process in procs:
            process.env = self.pod_env(process, services)
            process.head_gcs = f"127.0.0.1:{head.ports.gcs}"
            self.write_config_files(process)
            for folder in self.empty_dirs(process).values():
                Path(folder).mkdir(parents=True, exist_ok=True)
        head.start()
        self.say(f"pod {head.pod.name}: ray start --head (dashboard :{head.ports.dashboard})")
        wait_until(
            head.pod.name,
            lambda: http_ok(f"{self.dashboard(cluster.name)}/api/gcs_healthz"),
            180,
            head.proc,
            head.log_path,
        )
        # one worker at a time: raylets starting together on one machine race for the same
        # socket names in the session folder (each pod of a cluster has its own /tmp/ray)
        for up, process in enumerate((p for p in procs if not p.pod.head), start=2):
            process.start()
            self.say(f"pod {process.pod.name}: ray start --address={process.head_gcs}")
            wait_until(
                process.pod.name,
                functools.partial(self.has_nodes, cluster.name, up),
                180,
                process.proc,
                process.log_path,
            )

    def empty_dirs(self, process: PodProcess) -> dict[str, str]:
        """The pod's emptyDir volumes as folders of its own (those under /tmp in its short
        tmp_root, the rest under its workdir; made when the pod starts); mount path -> folder."""
        folders: dict[str, str] = {}
        for mount_path, volume in process.pod.empty_dirs.items():
            if mount_path == POD_TMP or mount_path.startswith(POD_TMP + "/"):
                folder = process.tmp_root / mount_path.removeprefix(POD_TMP).lstrip("/")
            else:
                folder = process.workdir / "volumes" / volume
            folders[mount_path] = str(folder)
        return folders

    def write_config_files(self, process: PodProcess) -> dict[str, str]:
        """The ConfigMap files the pod mounts, under its workdir; mount path -> folder."""
        mounts: dict[str, str] = {}
        for mount_path, files in process.pod.config_files.items():
            folder = process.workdir / "mounts" / mount_path.strip("/").replace("/", "_")
            folder.mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                (folder / name).write_text(text)
                (folder / name).chmod(0o555)
            mounts[mount_path] = str(folder)
        return mounts

    def dashboard(self, cluster: str) -> str:
        head = next(p for p in self.pods if p.pod.cluster == cluster and p.pod.head)
        return f"http://127.0.0.1:{head.ports.dashboard}"

    def has_nodes(self, cluster: str, count: int) -> bool:
        return self.alive_nodes(cluster) >= count

    def alive_nodes(self, cluster: str) -> int:
        try:
            answer = httpx.get(
                f"{self.dashboard(cluster)}/nodes?view=summary",
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=10,
                trust_env=False,
            )
            summary = answer.json()["data"]["summary"]
        except (httpx.HTTPError, ValueError, KeyError):
            return 0
        return sum(1 for n in summary if n.get("raylet", {}).get("state") == "ALIVE")

    # --- watching --------------------------------------------------------------------------

    def start_monitor(self) -> None:
        def loop() -> None:
            while not self._stop_monitor.wait(self.options.sample_every_s):
                self.tick()

        self._monitor = threading.Thread(target=loop, name="rehearsal-monitor", daemon=True)
        self._monitor.start()

    def tick(self) -> None:
        """Sample every pod; start again any whose `ray start` exited (a pod restart)."""
        with self._pods_lock:
            for process in self.pods:
                if process.proc is None:
                    continue
                held = process.pod.name in self.held_down
                if not process.alive() and not held and not self._stop_monitor.is_set():
                    self.say(f"pod {process.pod.name}: exited; restarting it")
                    process.restart()
                process.sample()

    def pods_pids(self) -> dict[str, set[int]]:
        with self._pods_lock:
            return {p.pod.name: p.pids() for p in self.pods if p.proc is not None}

    def kill_pod(self, name: str) -> None:
        """SIGKILL the pod's every process at once (its node lost); kept down until revived."""
        with self._pods_lock:
            process = next(p for p in self.pods if p.pod.name == name)
            self.held_down.add(name)
            process.sample()
            process.kill()
            process.usage.kills += 1

    def revive_pod(self, name: str) -> None:
        """Let the monitor start a killed pod again (KubeRay's replacement pod)."""
        with self._pods_lock:
            self.held_down.discard(name)

    def node_killer(self, failure: NodeFailure, cluster: str) -> NodeKiller:
        dashboard = self.dashboard(cluster)
        return NodeKiller(
            failure,
            functools.partial(list_actors, dashboard, self.token),
            self.pods_pids,
            self.kill_pod,
            self.revive_pod,
            self.say,
        )

    def delete_cluster(self, cluster: str) -> None:
        """Stop a job's own cluster once the job ended, as its deletionRules (DeleteCluster)
        do; its pods' usage so far stays in the report."""
        with self._pods_lock:
            for process in self.pods:
                if process.pod.cluster == cluster and process.proc is not None:
                    process.sample()
                    process.stop()
                    process.proc = None
        self.say(f"cluster {cluster}: deleted after its job")

    # --- ending ----------------------------------------------------------------------------

    def close(self) -> None:
        self._stop_monitor.set()
        if self._monitor is not None:
            self._monitor.join(timeout=30)
        for process in reversed(self.pods):
            process.stop()
            if not self.options.keep:
                shutil.rmtree(process.tmp_root, ignore_errors=True)
        for run_dir in self.run_dirs:
            remove_serve_run_dir(run_dir)
        for part in reversed(self.stand_ins):
            part.stop()
        if not self.options.keep:
            shutil.rmtree(self.options.workdir / "data", ignore_errors=True)


@contextmanager
def rehearsal(options: Options, say: Say = print) -> Iterator[Rehearsal]:
    r = Rehearsal(options, say)
    try:
        yield r
    finally:
        r.close()
