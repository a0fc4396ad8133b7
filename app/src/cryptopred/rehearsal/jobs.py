"""Submitting the manifests' jobs with `ray job submit` and deploying Serve by its REST API."""

from __future__ import annotations

import copy
import shlex
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cryptopred.rehearsal.manifest import Job, Obj, rewrite_mounts
from cryptopred.rehearsal.nodes import RAY_BIN

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


@dataclass
class Submitted:
    job: Job
    submission_id: str
    entrypoint: str
    status: str = "PENDING"
    duration_s: float = 0.0


def _client(token: str) -> httpx.Client:
    return httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30, trust_env=False)


def submit(
    job: Job,
    dashboard: str,
    env: Mapping[str, str],
    mounts: Mapping[str, str],
    submission_id: str,
    log_path: Path,
) -> Submitted:
    """`ray job submit --address <dashboard> --no-wait -- <entrypoint>`: the manifest's
    entrypoint word for word, except ConfigMap mount paths pointed at their files here."""
    entrypoint = rewrite_mounts(job.entrypoint, mounts)
    argv = [
        str(RAY_BIN),
        "job",
        "submit",
        "--address",
        dashboard,
        "--submission-id",
        submission_id,
        "--no-wait",
        "--",
        *shlex.split(entrypoint),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        argv, env=dict(env), capture_output=True, text=True, timeout=120, check=False
    )
    log_path.write_text(f"$ {shlex.join(argv)}\n{done.stdout}{done.stderr}")
    if done.returncode:
        raise RuntimeError(f"ray job submit {job.name} failed (rc {done.returncode}): {log_path}")
    return Submitted(job, submission_id, entrypoint)


def job_status(dashboard: str, token: str, submission_id: str) -> str:
    with _client(token) as client:
        answer = client.get(f"{dashboard}/api/jobs/{submission_id}")
        answer.raise_for_status()
        return str(answer.json()["status"])


def job_logs(dashboard: str, token: str, submission_id: str) -> str:
    with _client(token) as client:
        answer = client.get(f"{dashboard}/api/jobs/{submission_id}/logs")
        return str(answer.json().get("logs", "")) if answer.is_success else answer.text


def wait_job(
    submitted: Submitted, dashboard: str, token: str, timeout_s: float, tick: Any = None
) -> str:
    """Poll the job until it ends or `timeout_s` passes; `tick()` runs between polls."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        submitted.status = job_status(dashboard, token, submitted.submission_id)
        if submitted.status in TERMINAL:
            break
        if tick is not None:
            tick()
        time.sleep(2)
    submitted.duration_s = time.monotonic() - start
    return submitted.status


def local_serve_config(config: Obj, port: int) -> Obj:
    """serveConfigV2 with Serve's HTTP listener on 127.0.0.1:`port` (the pod's port 8000
    would collide with the embedded stack's)."""
    local = copy.deepcopy(config)
    local.setdefault("http_options", {})
    local["http_options"]["host"] = "127.0.0.1"
    local["http_options"]["port"] = port
    return local


def deploy_serve(dashboard: str, token: str, config: Obj) -> None:
    """PUT the config to Serve's REST API (`/api/serve/applications/`), as KubeRay does."""
    with _client(token) as client:
        answer = client.put(f"{dashboard}/api/serve/applications/", json=config, timeout=120)
        if not answer.is_success:
            raise RuntimeError(f"Serve deploy answered {answer.status_code}: {answer.text[-3000:]}")


def serve_status(dashboard: str, token: str) -> dict[str, str]:
    """Each application's status (RUNNING, DEPLOYING, DEPLOY_FAILED, ...)."""
    with _client(token) as client:
        answer = client.get(f"{dashboard}/api/serve/applications/")
        if not answer.is_success:
            return {}
        apps = answer.json().get("applications", {})
        return {name: str(app.get("status")) for name, app in apps.items()}
