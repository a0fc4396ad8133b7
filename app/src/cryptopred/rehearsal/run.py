"""The rehearsal from start to end: stand-ins, pods, jobs, Serve, checks, the per-pod table."""

from __future__ import annotations

import functools
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from cryptopred.rehearsal import checks
from cryptopred.rehearsal.checks import Check
from cryptopred.rehearsal.cluster import Options, Rehearsal, Say, rehearsal
from cryptopred.rehearsal.faults import NodeFailure
from cryptopred.rehearsal.jobs import (
    Submitted,
    deploy_serve,
    local_serve_config,
    serve_status,
    submit,
    wait_job,
)
from cryptopred.rehearsal.manifest import Obj, Plan, ServiceMap, read_plan, secret_names
from cryptopred.rehearsal.report import Usage, format_table
from cryptopred.rehearsal.traffic import Traffic, summarize
from cryptopred_core.ports import free_port
from cryptopred_core.raycluster import (
    embedded_ray_env,
)


@dataclass
class Outcome:
    usage: list[Usage]
    checks: list[Check]
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


def run_jobs(r: Rehearsal, plan: Plan, services: ServiceMap) -> tuple[list[Submitted], list[Check]]:
    """Each job as the manifest writes it, on its cluster (a job's own one up for its run
    only); the node failure, if any, during the job it names."""
    options, say = r.options, r.say
    submitted: list[Submitted] = []
    found: list[Check] = []
    failure = options.node_failure
    submitter_env = r.base_env() | embedded_ray_env(r.settings)
    for job in plan.jobs:
        own = plan.cluster(job.cluster).owner_job is not None
        if own:
            r.start_cluster(plan.cluster(job.cluster), services)
        head = next(p for p in r.pods if p.pod.cluster == job.cluster and p.pod.head)
        dashboard = r.dashboard(job.cluster)
        sid = f"rehearsal-{job.name}-{int(time.time())}"
        log = options.workdir / "jobs" / f"{job.name}.submit.log"
        done = submit(job, dashboard, submitter_env, r.write_config_files(head), sid, log)
        submitted.append(done)
        say(f"{job.kind} {job.name}: submitted `{done.entrypoint}` as {sid}")
        killer = None
        if failure is not None and job.name == failure.during:
            killer = r.node_killer(failure, job.cluster)
            killer.start()
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
        if killer is not None:
            found.append(killer.join(killer.failure.longest_s).check())
        if own and job.wait:
            r.delete_cluster(job.cluster)
        if job.wait and job.kind == "RayJob":  # the stream catches up before training
            checks.wait_stream_settled(r.settings.db_url, say)
    if failure is not None and not any(c.name.startswith("node failure") for c in found):
        found.append(Check("node failure", False, f"no job named {failure.during}"))
    return submitted, found


def run_serve(r: Rehearsal, plan: Plan) -> list[Check]:
    """Each RayService's serveConfigV2 through Serve's REST API, then its checks."""
    found: list[Check] = []
    for cluster in plan.clusters:
        if cluster.serve_config is None:
            continue
        port = free_port()
        dashboard = r.dashboard(cluster.name)
        try:
            deploy_serve(dashboard, r.token, local_serve_config(cluster.serve_config, port))
        except (RuntimeError, httpx.HTTPError) as exc:
            lines = str(exc).splitlines()
            found.append(Check(f"RayService {cluster.name} deploy", False, lines[-1]))
            r.say("\n".join(lines[-20:]))
            continue
        r.say(f"RayService {cluster.name}: serveConfigV2 deployed; Serve on :{port}")
        base_url = f"http://127.0.0.1:{port}"
        answered = checks.serve_checks(
            base_url,
            functools.partial(serve_status, dashboard, r.token),
            r.settings,
            r.options.serve_timeout_s,
            r.say,
        )
        found += answered
        failure = r.options.serve_failure
        if failure is not None and all(c.ok for c in answered):
            url = f"{base_url}/v1/predictions/{r.settings.pairs[0]}"
            found += serve_node_failure(r, cluster.name, url, failure)
    if r.options.serve_failure is not None and not any(
        c.name.startswith("requests while") for c in found
    ):
        found.append(Check("Serve node failure", False, "Serve did not answer before it"))
    return found


def serve_node_failure(r: Rehearsal, cluster: str, url: str, failure: NodeFailure) -> list[Check]:
    """Lose the node of an API replica while requests keep coming: the replicas run again
    elsewhere, and the requests say how many failed during the switch."""
    if not any(p.pod.cluster == cluster and not p.pod.head for p in r.pods):
        detail = f"{cluster} has no worker pods: its replicas run on the head, with no other node"
        return [Check("Serve node failure", False, detail)]
    traffic = Traffic(url)
    traffic.start()
    killer = r.node_killer(failure, cluster)
    killer.start()
    report = killer.join(failure.longest_s)
    time.sleep(10.0)  # answering again after the switch, for a while
    sent = traffic.stop()
    summary = summarize(sent, report.killed_at, report.revived_at or time.monotonic(), 10.0)
    return [report.check(), summary.check(report.pod or "a Serve node")]


def run(options: Options, docs: list[Obj], say: Say = print) -> Outcome:
    """Start what `docs` (a rendered overlay) describes, run its jobs and Serve, check."""
    plan = read_plan(docs, generated_secrets(docs))
    with rehearsal(options, say) as r:
        r.start_stand_ins()
        r.plan_pods(plan)
        services = r.service_map(plan, docs)
        for cluster in plan.clusters:
            if cluster.owner_job is None:
                r.start_cluster(cluster, services)
        r.start_monitor()
        submitted, found = run_jobs(r, plan, services)
        found += checks.job_checks(submitted)
        found += checks.table_checks(r.settings.db_url)
        if options.extra_checks is not None:
            found += options.extra_checks(r.settings)
        found.append(checks.champion_check(r.settings.mlflow_uri, r.settings))
        found += run_serve(r, plan)
        for done in submitted:
            if not done.job.wait:
                jobs_dir = options.workdir / "jobs"
                checks.save_job_logs(done, r.dashboard(done.job.cluster), r.token, jobs_dir)
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
