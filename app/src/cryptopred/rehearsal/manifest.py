"""Reading the rendered KubeRay overlay: Ray pods, their env and limits, the jobs, Serve's config.

Pure functions over the objects of `kubectl kustomize` (a list of dicts); nothing is started.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

Obj = dict[str, Any]

_MEMORY_UNITS = {
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
}


class ManifestError(ValueError):
    """The rendered overlay lacks something the rehearsal needs; the message names it."""


def cpu_cores(value: str | int | float) -> float:
    """A Kubernetes CPU quantity ("500m", "2", 1.5) in cores."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory_bytes(value: str | int) -> int:
    """A Kubernetes memory quantity ("1664Mi", "2Gi", "512M", 1024) in bytes."""
    text = str(value)
    for suffix, factor in _MEMORY_UNITS.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(float(text))


@dataclass(frozen=True)
class Pod:
    """One Ray pod: the head of a cluster or one replica of a worker group."""

    name: str  # e.g. "cryptopred-head", "cryptopred-serve-worker-serve-0"
    cluster: str  # the RayCluster's name, or the RayService's
    head: bool
    ray_start_params: dict[str, str]
    env: dict[str, str]
    cpu_limit: float
    memory_limit_bytes: int
    #: mount path -> {file name: content} of every ConfigMap volume the container mounts
    config_files: dict[str, dict[str, str]] = field(default_factory=dict)
    #: mount path -> volume name of every emptyDir the container mounts (its own scratch space)
    empty_dirs: dict[str, str] = field(default_factory=dict)

    @property
    def num_cpus(self) -> str:
        """What `ray start --num-cpus` gets: rayStartParams' num-cpus, else the CPU limit
        rounded up (as KubeRay does)."""
        given = self.ray_start_params.get("num-cpus")
        return given if given is not None else str(math.ceil(self.cpu_limit))


@dataclass(frozen=True)
class Cluster:
    name: str
    kind: str  # RayCluster, RayService, or the RayJob / RayCronJob whose rayClusterSpec it is
    pods: list[Pod]
    #: the RayService's serveConfigV2, parsed; None for a RayCluster
    serve_config: Obj | None = None
    #: the job that brings this cluster up for its run and deletes it after (rayClusterSpec);
    #: None for a cluster that runs all the time
    owner_job: str | None = None

    @property
    def head(self) -> Pod:
        return next(p for p in self.pods if p.head)


@dataclass(frozen=True)
class Job:
    """A RayJob, or one run of a RayCronJob's job template."""

    name: str
    kind: str  # RayJob or RayCronJob
    cluster: str  # the RayCluster its clusterSelector names, or its own (rayClusterSpec)
    entrypoint: str
    #: False for a job that runs until stopped (submitted with --no-wait)
    wait: bool


@dataclass(frozen=True)
class Plan:
    clusters: list[Cluster]
    jobs: list[Job]

    def cluster(self, name: str) -> Cluster:
        found = [c for c in self.clusters if c.name == name]
        if not found:
            raise ManifestError(f"no RayCluster or RayService named {name!r}")
        return found[0]


@dataclass(frozen=True)
class ServiceMap:
    """Where the cluster's services are on this machine: `host:port` -> stand-in `host:port`,
    and whole env values replaced by name (the database URL of a stand-in of another engine)."""

    hosts: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)

    def apply(self, env: Mapping[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in env.items():
            if name in self.values:
                out[name] = self.values[name]
                continue
            for cluster_address, local in self.hosts.items():
                value = re.sub(rf"(?<![\w.-]){re.escape(cluster_address)}(?![\w])", local, value)
            out[name] = value
        return out


def _by_name(docs: Iterable[Obj], kind: str) -> dict[str, Obj]:
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def container_env(
    container: Obj, config_maps: Mapping[str, Obj], secrets: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """A container's environment as the kubelet builds it: `envFrom` (ConfigMaps, Secrets) in
    order, then `env` (values, configMapKeyRef, secretKeyRef); a later name wins."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            data = _config_map(config_maps, source["configMapRef"]["name"])
        elif "secretRef" in source:
            data = _secret(secrets, source["secretRef"]["name"])
        else:
            raise ManifestError(f"envFrom entry {source} is neither a ConfigMap nor a Secret")
        env.update({prefix + k: str(v) for k, v in data.items()})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item.get("valueFrom", {})
        if "configMapKeyRef" in ref:
            key_ref = ref["configMapKeyRef"]
            data = _config_map(config_maps, key_ref["name"])
        elif "secretKeyRef" in ref:
            key_ref = ref["secretKeyRef"]
            data = _secret(secrets, key_ref["name"])
        else:
            raise ManifestError(f"env {item['name']}: unsupported valueFrom {ref}")
        if key_ref["key"] not in data:
            raise ManifestError(f"env {item['name']}: {key_ref['name']} has no {key_ref['key']}")
        env[item["name"]] = str(data[key_ref["key"]])
    return env


def _config_map(config_maps: Mapping[str, Obj], name: str) -> dict[str, str]:
    if name not in config_maps:
        raise ManifestError(f"ConfigMap {name} is not in the rendered overlay")
    return dict(config_maps[name].get("data", {}))


def _secret(secrets: Mapping[str, Mapping[str, str]], name: str) -> dict[str, str]:
    if name not in secrets:
        raise ManifestError(f"Secret {name} is not given (`make secrets` creates it)")
    return dict(secrets[name])


def _config_files(pod_spec: Obj, container: Obj, config_maps: Mapping[str, Obj]) -> dict[str, Any]:
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    files: dict[str, dict[str, str]] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if "configMap" in volume:
            files[mount["mountPath"]] = _config_map(config_maps, volume["configMap"]["name"])
    return files


def _empty_dirs(pod_spec: Obj, container: Obj) -> dict[str, str]:
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    return {
        mount["mountPath"]: mount["name"]
        for mount in container.get("volumeMounts", [])
        if "emptyDir" in volumes.get(mount["name"], {})
    }


def on_own_volumes(env: Mapping[str, str], volumes: Mapping[str, str]) -> dict[str, str]:
    """`env` with every value under an emptyDir mount path (e.g. `/tmp/cryptopred` under
    `/tmp`) moved to `volumes[mount path]`, the pod's own folder for it: pods on one machine
    must not share what each has to itself on a cluster (cursor and state files)."""
    out = dict(env)
    longest_first = sorted(volumes.items(), key=lambda m: -len(m[0]))
    for key, value in env.items():
        for mount_path, local in longest_first:
            if value == mount_path or value.startswith(mount_path + "/"):
                out[key] = local + value[len(mount_path) :]
                break
    return out


def _ray_container(pod_spec: Obj, where: str) -> Obj:
    for container in pod_spec["containers"]:
        if container["name"] in ("ray-head", "ray-worker"):
            return dict(container)
    if len(pod_spec["containers"]) == 1:
        return dict(pod_spec["containers"][0])
    raise ManifestError(f"{where}: no container named ray-head or ray-worker")


def _pod(
    name: str,
    cluster: str,
    head: bool,
    group: Obj,
    config_maps: Mapping[str, Obj],
    secrets: Mapping[str, Mapping[str, str]],
) -> Pod:
    pod_spec = group["template"]["spec"]
    container = _ray_container(pod_spec, name)
    limits = container.get("resources", {}).get("limits", {})
    if "cpu" not in limits or "memory" not in limits:
        raise ManifestError(f"{name}: the Ray container sets no CPU or memory limit")
    return Pod(
        name=name,
        cluster=cluster,
        head=head,
        ray_start_params={k: str(v) for k, v in group.get("rayStartParams", {}).items()},
        env=container_env(container, config_maps, secrets),
        cpu_limit=cpu_cores(limits["cpu"]),
        memory_limit_bytes=memory_bytes(limits["memory"]),
        config_files=_config_files(pod_spec, container, config_maps),
        empty_dirs=_empty_dirs(pod_spec, container),
    )


def cluster_pods(
    name: str,
    spec: Obj,
    config_maps: Mapping[str, Obj],
    secrets: Mapping[str, Mapping[str, str]],
) -> list[Pod]:
    """The head, then `replicas` pods of each worker group (KubeRay's pod names)."""
    pods = [_pod(f"{name}-head", name, True, spec["headGroupSpec"], config_maps, secrets)]
    for group in spec.get("workerGroupSpecs") or []:
        replicas = int(group.get("replicas", group.get("minReplicas", 0)))
        for i in range(replicas):
            pod_name = f"{name}-worker-{group['groupName']}-{i}"
            pods.append(_pod(pod_name, name, False, group, config_maps, secrets))
    return pods


def _job(kind: str, name: str, spec: Obj) -> Job:
    """A job on the RayCluster its clusterSelector names, or on its own cluster (named as the
    job) where it carries a rayClusterSpec."""
    selector = spec.get("clusterSelector", {}).get("ray.io/cluster")
    if "rayClusterSpec" in spec:
        selector = name
    if not selector:
        raise ManifestError(f"{kind} {name}: neither a clusterSelector nor a rayClusterSpec")
    # a job that cleans itself up once finished is one that finishes; the streaming job has no
    # deletion rule and runs until stopped
    finishes = "deletionStrategy" in spec or spec.get("shutdownAfterJobFinishes", False)
    return Job(name, kind, selector, spec["entrypoint"], wait=bool(finishes))


def read_plan(docs: Iterable[Obj], secrets: Mapping[str, Mapping[str, str]]) -> Plan:
    """Every Ray cluster (RayCluster, RayService) with its pods, and every job: RayJobs in
    manifest order (those that run until stopped first), then one run of each RayCronJob."""
    docs = [d for d in docs if d]
    config_maps = _by_name(docs, "ConfigMap")
    clusters: list[Cluster] = []
    for name, obj in _by_name(docs, "RayCluster").items():
        pods = cluster_pods(name, obj["spec"], config_maps, secrets)
        clusters.append(Cluster(name, "RayCluster", pods))
    for name, obj in _by_name(docs, "RayService").items():
        spec = obj["spec"]
        pods = cluster_pods(name, spec["rayClusterConfig"], config_maps, secrets)
        raw = spec.get("serveConfigV2")
        if not raw:
            raise ManifestError(f"RayService {name} has no serveConfigV2")
        clusters.append(Cluster(name, "RayService", pods, yaml.safe_load(raw)))
    specs = [("RayJob", n, o["spec"]) for n, o in _by_name(docs, "RayJob").items()]
    jobs = [_job(*s) for s in specs]
    jobs.sort(key=lambda j: j.wait)  # stable: long-running ones first, else manifest order
    cron = [
        ("RayCronJob", n, o["spec"]["jobTemplate"]) for n, o in _by_name(docs, "RayCronJob").items()
    ]
    jobs += [_job(*s) for s in cron]
    for kind, name, spec in specs + cron:
        if "rayClusterSpec" in spec:
            pods = cluster_pods(name, spec["rayClusterSpec"], config_maps, secrets)
            clusters.append(Cluster(name, kind, pods, owner_job=name))
    known = {c.name for c in clusters if c.kind != "RayService"}
    for job in jobs:
        if job.cluster not in known:
            raise ManifestError(f"{job.kind} {job.name}: no RayCluster {job.cluster}")
    return Plan(clusters, jobs)


def secret_names(docs: Iterable[Obj]) -> set[str]:
    """The Secrets the Ray containers read (envFrom secretRef, env secretKeyRef)."""
    names: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key in ("secretKeyRef", "secretRef"):
                if key in node and "name" in node[key]:
                    names.add(node[key]["name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for doc in docs:
        if doc and doc.get("kind") in ("RayCluster", "RayService"):
            walk(doc)
    return names


def rewrite_mounts(entrypoint: str, mounts: Mapping[str, str]) -> str:
    """`entrypoint` with each ConfigMap mount path replaced by where its files are here."""
    for mount_path, local in sorted(mounts.items(), key=lambda m: -len(m[0])):
        entrypoint = re.sub(rf"(?<![\w/]){re.escape(mount_path)}(?=/|\s|$)", local, entrypoint)
    return entrypoint


def ray_start_argv(pod: Pod, ports: Mapping[str, int], head_gcs: str | None) -> list[str]:
    """`ray start` for `pod` as KubeRay starts it: every rayStartParams entry as a flag,
    `--num-cpus` and `--memory` from the limits, `--block`; listeners on 127.0.0.1 and the
    ports in `ports` (flag name -> port) instead of the container's fixed ones."""
    params = dict(pod.ray_start_params)
    params["num-cpus"] = pod.num_cpus
    params.setdefault("memory", str(pod.memory_limit_bytes))
    if "dashboard-host" in params:
        params["dashboard-host"] = "127.0.0.1"
    params["node-ip-address"] = "127.0.0.1"
    params.update({flag: str(port) for flag, port in ports.items()})
    argv = ["start", "--block", "--disable-usage-stats"]
    if pod.head:
        argv.append("--head")
    else:
        if head_gcs is None:
            raise ManifestError(f"{pod.name}: a worker needs its head's GCS address")
        params["address"] = head_gcs
    for flag, value in params.items():
        argv.append(f"--{flag}={shell_word(value)}")
    return argv


def shell_word(value: str) -> str:
    """A rayStartParams value as the pod's shell passes it on: KubeRay writes the values into
    a `ray start` command line, so a quoted one (`'"{\\"stage\\": 3}"'` in YAML) loses
    its quotes there."""
    if not value.startswith(("'", '"')):
        return value
    words = shlex.split(value)
    return words[0] if len(words) == 1 else value
