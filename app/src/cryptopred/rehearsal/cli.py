"""`cryptopred cluster-rehearsal`: the KubeRay overlay started on this machine, checked."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from cryptopred.rehearsal.cluster import Options
from cryptopred.rehearsal.faults import API_REPLICAS, NodeFailure
from cryptopred.rehearsal.manifest import memory_bytes
from cryptopred.rehearsal.run import render_overlay, run


def _pairs(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"wanted KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def cluster_rehearsal(
    overlay: Annotated[str, typer.Option("--env", help="overlay: dev or prod")] = "dev",
    workdir: Annotated[
        Path | None, typer.Option(help="where pods, logs and data go (default: a new folder)")
    ] = None,
    root: Annotated[Path, typer.Option(help="the checkout holding kuberay/")] = Path(),
    set_env: Annotated[
        list[str] | None, typer.Option("--set", help="KEY=VALUE added to every pod's env")
    ] = None,
    job_timeout_s: Annotated[float, typer.Option(help="longest wait for one job")] = 1800.0,
    keep: Annotated[
        bool, typer.Option(help="keep the stand-ins' data and each pod's /tmp (Ray logs)")
    ] = False,
    memory_limit: Annotated[
        list[str] | None,
        typer.Option(help="POD=QUANTITY: a pod's memory limit instead of the manifest's"),
    ] = None,
    kill_stages_node: Annotated[
        bool,
        typer.Option(
            help="during the backfill, SIGKILL the pod holding the most stage actors, keep it "
            "down 60 s, and check the actors run again on another node"
        ),
    ] = False,
    kill_serve_node: Annotated[
        bool,
        typer.Option(
            help="once Serve answers, SIGKILL the pod of an API replica under traffic, and "
            "count the requests that failed during the switch"
        ),
    ] = False,
) -> None:
    """Start what the rendered KubeRay overlay describes on this machine, without Kubernetes:
    one `ray start` per Ray pod (its own memory cgroup), the data services as embedded
    stand-ins on an empty DB; run every RayJob and one RayCronJob slot with `ray job submit`,
    deploy the RayService's serveConfigV2; print each pod's peak memory; exit 1 if a check
    fails. The exchange is CRYPTOPRED_KRAKEN_REST_URL / CRYPTOPRED_KRAKEN_WS_URL (default
    Kraken's)."""
    if overlay not in ("dev", "prod"):
        raise typer.BadParameter("--env must be dev or prod")
    folder = workdir or Path(".data") / "rehearsal" / f"{overlay}-{time.strftime('%Y%m%d-%H%M%S')}"
    limits = {pod: memory_bytes(size) for pod, size in _pairs(memory_limit or []).items()}
    options = Options(
        overlay,
        folder.absolute(),
        _pairs(set_env or []),
        job_timeout_s=job_timeout_s,
        keep=keep,
        memory_limits=limits,
        node_failure=NodeFailure() if kill_stages_node else None,
        serve_failure=(
            NodeFailure(actors=API_REPLICAS, during="serve", after_s=10, down_s=60)
            if kill_serve_node
            else None
        ),
    )
    outcome = run(
        options, render_overlay(overlay, root.absolute()), say=lambda s: print(s, flush=True)
    )
    print(f"rehearsal {'PASSED' if outcome.passed else 'FAILED'}; files under {folder}")
    if not outcome.passed:
        raise typer.Exit(1)
