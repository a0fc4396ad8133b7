"""Rendering the kuberay/ overlays and walking what they make: pods, resources, images.

For the offline manifest tests (app/tests/unit/kuberay/), in a checkout: every overlay is
rendered once per test session with `kubectl kustomize`.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from cryptopred_core.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[4]
KUBERAY = ROOT / "kuberay"
OVERLAYS = ("dev", "prod")
NAMESPACE = "cryptopred"
RAY_KINDS = ("RayCluster", "RayJob", "RayCronJob", "RayService")
STRIMZI_GROUP = "kafka.strimzi.io"
K8S_VERSION = "1.32.0"  # the Kind node image of kuberay/kind-config.yaml
GIB = 1024**3
MIB = 1024**2

# Budgets (see kuberay/README.md). Dev: a Docker engine of 4 vCPU / 12 GiB for Kind; what runs
# all the time fits it in requests and limits, and its requests plus a retraining run's leave
# ~1.5 GiB for Kind and the operators. Prod: one Civo g4s.kube.xlarge (6 vCPU / 16 GiB;
# ~5.9 vCPU / ~13.1 GiB allocatable) less ~0.5 vCPU / ~1.4 GiB for system pods and the two
# operators holds everything plus a retraining run; every pod but the run's own also fits one
# g4s.kube.medium (2 vCPU / 4 GiB; ~1.9 vCPU / ~2.7 GiB allocatable).
DEV_BUDGET = (4.0, 12 * GIB)
DEV_REQUEST_MEM = 10.5 * GIB  # with a retraining run: ~1.5 GiB of 12 GiB left for Kind
PROD_REQUEST_BUDGET = (5.4, 11.7 * GIB)
PROD_POD_MAX = (1.8, 2.5 * GIB)
PROD_NODE_ALLOCATABLE = (5.9, 13.1 * GIB)
# Retraining's memory peak per Ray Train worker count, measured on the embedded stack (a head
# that also held the stream stages and a source), and the headroom its limit keeps above it.
RETRAIN_PEAK_MEM = {1: 4.2 * GIB, 2: 5.0 * GIB}
RETRAIN_HEADROOM = 1.15

Obj = dict[str, Any]
S = TypeVar("S", bound=Settings)
# libyaml's loader where PyYAML has it: the CRD files are 75k lines.
YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --- rendering -------------------------------------------------------------------------------


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` is not installed: the kuberay manifests cannot be checked")
    return path


def make_kuberay(*args: str) -> subprocess.CompletedProcess[str]:
    """`make -f kuberay/Makefile.mk ARGS` in the checkout, without the flags of an outer make."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        [tool("make"), "--no-print-directory", "-f", "kuberay/Makefile.mk", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@functools.cache
def _render_text(overlay: str) -> str:
    done = subprocess.run(
        [tool("kubectl"), "kustomize", str(KUBERAY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize overlays/{overlay} failed:\n{done.stderr}"
    return done.stdout


def render(overlay: str) -> list[Obj]:
    docs = [d for d in yaml.load_all(_render_text(overlay), Loader=YAML_LOADER) if d]
    assert docs, f"overlay {overlay} renders nothing"
    return docs


def of_kind(docs: list[Obj], kind: str) -> list[Obj]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Obj], kind: str, name: str) -> Obj:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def group_of(obj: Obj) -> str:
    api: str = obj["apiVersion"]
    return api.split("/")[0] if "/" in api else ""


@functools.cache
def ray_version_in_lock() -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions: set[str] = {p["version"] for p in lock["package"] if p["name"] == "ray"}
    assert len(versions) == 1, f"uv.lock pins ray {versions or 'nowhere'}"
    return versions.pop()


def locked_version(name: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(str(p["version"]) for p in lock["package"] if p["name"] == name)


def deep_merge(base: Obj, override: Obj) -> Obj:
    """helm's merge of values files: maps merge, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def risingwave_values(overlay: str) -> Obj:
    values: Obj = yaml.safe_load((KUBERAY / "base" / "risingwave" / "values.yaml").read_text())
    if overlay == "prod":
        prod = yaml.safe_load(
            (KUBERAY / "overlays" / "prod" / "risingwave-values.yaml").read_text()
        )
        values = deep_merge(values, prod)
    return values


# --- walking pod specs -------------------------------------------------------------------------


def ray_groups(cluster_spec: Obj) -> Iterator[tuple[str, Obj, int]]:
    """(group name, group spec, replicas) of a Ray cluster: `head`, then each worker group."""
    yield "head", cluster_spec["headGroupSpec"], 1
    for group in cluster_spec.get("workerGroupSpecs") or []:
        yield group["groupName"], group, int(group.get("replicas", group.get("minReplicas", 0)))


def groups_offering(docs: list[Obj], resource: str) -> list[tuple[str, str, Obj, int]]:
    """(cluster, group name, group, replicas) of every Ray group offering `resource`."""
    out = []
    for cluster in [*of_kind(docs, "RayCluster"), *of_kind(docs, "RayService")]:
        spec = cluster["spec"].get("rayClusterConfig", cluster["spec"])
        for name, group, replicas in ray_groups(spec):
            if offered_resources(group).get(resource, 0) > 0:
                out.append((cluster["metadata"]["name"], name, group, replicas))
    return out


def configmap_settings(docs: list[Obj], kind: type[S]) -> S:
    """`kind` (a settings class) built from the ConfigMap `cryptopred-env`, as a pod reads it."""
    env = one(docs, "ConfigMap", "cryptopred-env")["data"]
    return kind(**{key.removeprefix(ENV_PREFIX).lower(): value for key, value in env.items()})


def offered_resources(group: Obj) -> dict[str, float]:
    """The custom Ray resources a group's pods offer (rayStartParams `resources`, a JSON object
    quoted for the pod's shell) and their `num-cpus` as `CPU` where given."""
    params = group.get("rayStartParams", {})
    out: dict[str, float] = {}
    if "resources" in params:
        (word,) = shlex.split(params["resources"])
        out.update({k: float(v) for k, v in json.loads(word).items()})
    if "num-cpus" in params:
        out["CPU"] = float(params["num-cpus"])
    return out


def _ray_cluster_pods(spec: Obj, where: str) -> Iterator[tuple[str, Obj, int]]:
    yield f"{where} head", spec["headGroupSpec"]["template"]["spec"], 1
    for group in spec.get("workerGroupSpecs") or []:
        count = max(group.get("replicas", 0), group.get("minReplicas", 0), group["maxReplicas"])
        yield f"{where} worker {group['groupName']}", group["template"]["spec"], count


def _ray_job_pods(spec: Obj, where: str) -> Iterator[tuple[str, Obj, int]]:
    if "rayClusterSpec" in spec:
        yield from _ray_cluster_pods(spec["rayClusterSpec"], where)
    if spec.get("submissionMode", "K8sJobMode") == "K8sJobMode":
        template = spec.get("submitterPodTemplate")
        assert template, f"{where}: set submitterPodTemplate so the submitter pod has resources"
        yield f"{where} submitter", template["spec"], 1


def pod_specs(obj: Obj) -> Iterator[tuple[str, Obj, int]]:
    """(where, pod spec, how many such pods at most) of every pod an object makes."""
    kind, spec = obj["kind"], obj.get("spec", {})
    where = f"{kind} {obj['metadata']['name']}"
    if kind in ("Deployment", "StatefulSet", "Job"):
        yield where, spec["template"]["spec"], spec.get("replicas", 1)
    elif kind == "RayCluster":
        yield from _ray_cluster_pods(spec, where)
    elif kind == "RayService":
        yield from _ray_cluster_pods(spec["rayClusterConfig"], where)
    elif kind == "RayJob":
        yield from _ray_job_pods(spec, where)
    elif kind == "RayCronJob":
        yield from _ray_job_pods(spec["jobTemplate"], where)


def containers(pod: Obj) -> list[Obj]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def cpu(value: str | int | float) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory(value: str | int) -> float:
    text = str(value)
    units = {"Ki": 1024, "Mi": MIB, "Gi": GIB, "Ti": 1024 * GIB, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


Usage = dict[str, float]


def resource_usage(resources: Obj, where: str) -> Usage:
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    for part, values in (("requests", requests), ("limits", limits)):
        missing = {"cpu", "memory"} - values.keys()
        assert not missing, f"{where}: resources.{part} lacks {sorted(missing)}"
    return {
        "req_cpu": cpu(requests["cpu"]),
        "req_mem": memory(requests["memory"]),
        "lim_cpu": cpu(limits["cpu"]),
        "lim_mem": memory(limits["memory"]),
    }


def _add(total: Usage, part: Usage, times: int = 1) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0.0) + value * times


def job_cluster_pod(where: str) -> bool:
    """A pod of a RayJob's or RayCronJob's own cluster (`rayClusterSpec`): it exists only while
    the job runs (the submitter is not one)."""
    return where.startswith(("RayJob ", "RayCronJob ")) and not where.endswith(" submitter")


def running_pods(
    docs: list[Obj], overlay: str, job_clusters: bool = True
) -> list[tuple[str, Usage, int]]:
    """Every long-running pod (or submitter) with its resources and count; one-shot Jobs excluded,
    and the pods of the jobs' own clusters unless `job_clusters`.

    Strimzi's pods come from the KafkaNodePool and the Kafka's entity operator, RisingWave's
    from its helm values.
    """
    pods: list[tuple[str, Usage, int]] = []
    for obj in docs:
        if obj["kind"] == "Job":
            continue
        for where, pod, count in pod_specs(obj):
            if not job_clusters and job_cluster_pod(where):
                continue
            usage: Usage = {}
            for c in pod["containers"]:
                _add(
                    usage, resource_usage(c.get("resources", {}), f"{where} container {c['name']}")
                )
            pods.append((where, usage, count))
    for pool in of_kind(docs, "KafkaNodePool"):
        where = f"KafkaNodePool {pool['metadata']['name']}"
        pods.append(
            (where, resource_usage(pool["spec"]["resources"], where), pool["spec"]["replicas"])
        )
    for kafka in of_kind(docs, "Kafka"):
        topic_operator = kafka["spec"]["entityOperator"]["topicOperator"]
        where = "Kafka entity operator"
        pods.append((where, resource_usage(topic_operator["resources"], where), 1))
    standalone = risingwave_values(overlay)["standalone"]
    pods.append(("RisingWave", resource_usage(standalone["resources"], "RisingWave"), 1))
    return pods


def totals(docs: list[Obj], overlay: str, job_clusters: bool = True) -> Usage:
    total: Usage = {}
    for _, usage, count in running_pods(docs, overlay, job_clusters):
        _add(total, usage, count)
    return total
