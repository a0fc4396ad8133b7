"""The rehearsal from start to end: stand-ins, pods, jobs, Serve, checks, the per-pod table."""

from __future__ import annotations

import dataclasses
import functools
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from cryptopred.rehearsal import checks
from cryptopred.rehearsal.jobs import (
    Submitted,
    deploy_serve,
    local_serve_config,
    serve_status,
    submit,
    wait_job,
)
from cryptopred.rehearsal.manifest import (
    Cluster,
    Obj,
    Plan,
    ServiceMap,
    on_own_volumes,
    read_plan,
    secret_names,
)
from cryptopred.rehearsal.nodes import RAY_BIN, PodProcess, pod_process
from cryptopred.rehearsal.report import MIB, Usage, format_table
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


@dataclass
class Outcome:
    usage: list[Usage]
    checks: list[checks.Check]
    jobs: list[Submitted]

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)


def render_overlay(overlay: str, root: Path) -> list[Obj]:
    """`kubectl kustomize kuberay/overlays/<overlay>` of the checkout at `root`."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl is not installed (`make system-deps` installs one)")
    done = subprocess.run(
        [kubectl, "kustomize", str(root / "kuberay" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"kubectl kustomize overlays/{overlay} failed: {done.stderr.strip()}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def generated_secrets(docs: list[Obj]) -> dict[str, dict[str, str]]:
    """Every Secret the Ray pods read, with random values (as `make secrets` makes them);
    the keys are the ones the manifests reference."""
    keys: dict[str, set[str]] = {name: set() for name in secret_names(docs)}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict) and ref.get("name") in keys:
                keys[ref["name"]].add(ref["key"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(docs)
    return {name: {k: secrets.token_hex(12) for k in names} for name, names in keys.items()}


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
        head.start()
        self.say(f"pod {head.pod.name}: ray start --head (dashboard :{head.ports.dashboard})")
        wait_until(
            head.pod.name,
            lambda: http_ok(f"{self.dashboard(cluster.name)}/api/gcs_healthz"),
            180,
            head.proc,
            head.log_path,
        )
        for process in procs:
            if not process.pod.head:
                process.start()
                self.say(f"pod {process.pod.name}: ray start --address={process.head_gcs}")
        wait_until(cluster.name, lambda: self.alive_nodes(cluster.name) >= len(procs), 180)

    def empty_dirs(self, process: PodProcess) -> dict[str, str]:
        """The pod's emptyDir volumes as folders under its workdir; mount path -> folder."""
        folders: dict[str, str] = {}
        for mount_path, volume in process.pod.empty_dirs.items():
            folder = process.workdir / "volumes" / volume
            folder.mkdir(parents=True, exist_ok=True)
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
                if not process.alive() and not self._stop_monitor.is_set():
                    self.say(f"pod {process.pod.name}: exited; restarting it")
                    process.restart()
                process.sample()

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


def run(options: Options, docs: list[Obj], say: Say = print) -> Outcome:
    """Start what `docs` (a rendered overlay) describes, run its jobs and Serve, check."""
    plan = read_plan(docs, generated_secrets(docs))
    submitted: list[Submitted] = []
    found: list[checks.Check] = []
    with rehearsal(options, say) as r:
        r.start_stand_ins()
        r.plan_pods(plan)
        services = r.service_map(plan, docs)
        for cluster in plan.clusters:
            if cluster.owner_job is None:
                r.start_cluster(cluster, services)
        r.start_monitor()
        submitter_env = r.base_env() | embedded_ray_env(r.settings)
        for job in plan.jobs:
            own = plan.cluster(job.cluster).owner_job is not None
            if own:  # the job's rayClusterSpec: up for this run only
                r.start_cluster(plan.cluster(job.cluster), services)
            head = next(p for p in r.pods if p.pod.cluster == job.cluster and p.pod.head)
            mounts = r.write_config_files(head)
            dashboard = r.dashboard(job.cluster)
            sid = f"rehearsal-{job.name}-{int(time.time())}"
            log = options.workdir / "jobs" / f"{job.name}.submit.log"
            done = submit(job, dashboard, submitter_env, mounts, sid, log)
            submitted.append(done)
            say(f"{job.kind} {job.name}: submitted `{done.entrypoint}` as {sid}")
            if job.wait:
                status = wait_job(done, dashboard, r.token, options.job_timeout_s)
                say(f"{job.kind} {job.name}: {status} after {done.duration_s:.0f} s")
                log_path = checks.save_job_logs(done, dashboard, r.token, options.workdir / "jobs")
                if status != "SUCCEEDED":
                    tail = log_path.read_text(errors="replace").splitlines()[-15:]
                    say("\n".join([f"{job.name} log ({log_path}), last lines:", *tail]))
            else:
                checks.wait_running(done, dashboard, r.token, 300)
                say(f"{job.kind} {job.name}: {done.status} (left running)")
            if own and job.wait:
                r.delete_cluster(job.cluster)
            if job.wait and job.kind == "RayJob":  # the stream catches up before training
                checks.wait_stream_settled(r.settings.db_url, say)
        found += checks.job_checks(submitted)
        found += checks.table_checks(r.settings.db_url)
        found.append(checks.champion_check(r.settings.mlflow_uri, r.settings))
        for cluster in plan.clusters:
            if cluster.serve_config is None:
                continue
            port = free_port()
            dashboard = r.dashboard(cluster.name)
            try:
                deploy_serve(dashboard, r.token, local_serve_config(cluster.serve_config, port))
            except (RuntimeError, httpx.HTTPError) as exc:
                lines = str(exc).splitlines()
                found.append(checks.Check(f"RayService {cluster.name} deploy", False, lines[-1]))
                say("\n".join(lines[-20:]))
                continue
            say(f"RayService {cluster.name}: serveConfigV2 deployed; Serve on :{port}")
            found += checks.serve_checks(
                f"http://127.0.0.1:{port}",
                functools.partial(serve_status, dashboard, r.token),
                r.settings,
                options.serve_timeout_s,
                say,
            )
        for submitted_job in submitted:
            if not submitted_job.job.wait:
                checks.save_job_logs(
                    submitted_job,
                    r.dashboard(submitted_job.job.cluster),
                    r.token,
                    options.workdir / "jobs",
                )
        r.tick()
        usage = [p.usage for p in r.pods]
        found += [checks.memory_check(u) for u in usage]
        for process in r.pods:
            if not process.cgroup.enforced:
                say(f"pod {process.pod.name}: memory limit NOT enforced ({process.cgroup.problem})")
    say(format_table(usage))
    for check in found:
        say(f"{'PASS' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    return Outcome(usage, found, submitted)
