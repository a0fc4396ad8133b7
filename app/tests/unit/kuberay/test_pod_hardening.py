"""Read-only root filesystems with writable volumes where each container writes, and no
service-account token in pods that do not call the Kubernetes API."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from cryptopred_testsupport.kuberay.render import (
    KUBERAY,
    OVERLAYS,
    Obj,
    containers,
    of_kind,
    pod_specs,
    render,
    tool,
)

# Where each container writes at run time (besides what its env names: HOME, PGDATA).
WRITES = {
    "ray-head": ["/tmp", "/tmp/ray", "/home/ray/.cache"],
    "ray-worker": ["/tmp", "/tmp/ray", "/home/ray/.cache"],
    "ray-job-submitter": ["/tmp", "/home/ray/.cache"],
    "mlflow": ["/tmp"],  # HOME, the basic-auth config it writes at start
    "postgres": ["/var/run/postgresql", "/tmp"],
    "psql": ["/tmp"],
    "minio": ["/data"],
    "mc": ["/tmp"],
    "grafana": ["/var/lib/grafana", "/tmp"],
    "kafka-ui": ["/tmp"],
    "redis": ["/data"],
    "prometheus": ["/prometheus"],
}
# Containers that keep a writable root filesystem, and why. None today.
WRITABLE_ROOT: dict[str, str] = {}
# Pods that call the Kubernetes API and so keep their service-account token.
API_CLIENTS = {"Deployment prometheus": "pod discovery for scraping the Ray pods"}


def _writable_mounts(pod: Obj, container: Obj) -> list[str]:
    """Mount paths of emptyDirs and claims (a name no pod volume defines is a StatefulSet's
    volumeClaimTemplate)."""
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    return [
        m["mountPath"]
        for m in container.get("volumeMounts") or []
        if not m.get("readOnly")
        and (
            m["name"] not in volumes
            or {"emptyDir", "persistentVolumeClaim"} & volumes[m["name"]].keys()
        )
    ]


def _under(path: str, mounts: list[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def root_filesystem_problems(where: str, pod: Obj) -> list[str]:
    """Containers whose root is writable without a reason, or that write outside their volumes."""
    problems = []
    for container in containers(pod):
        name = container["name"]
        context = container.get("securityContext") or {}
        if not context.get("readOnlyRootFilesystem"):
            if name not in WRITABLE_ROOT:
                problems.append(f"{where} {name}: root filesystem is writable")
            continue
        assert name in WRITES, f"{where} {name}: add where it writes to WRITES"
        env = {e["name"]: e.get("value") for e in container.get("env") or []}
        paths = WRITES[name] + [env[k] for k in ("HOME", "PGDATA") if env.get(k)]
        mounts = _writable_mounts(pod, container)
        problems += [
            f"{where} {name}: writes {p} on a read-only root"
            for p in paths
            if not _under(p, mounts)
        ]
    return problems


def _addon_docs() -> list[Obj]:
    done = subprocess.run(
        [tool("kubectl"), "kustomize", str(KUBERAY / "addons" / "prometheus")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _all_pods(overlay: str) -> list[tuple[str, Obj]]:
    docs = render(overlay) + _addon_docs()
    return [(where, pod) for obj in docs for where, pod, _ in pod_specs(obj)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_root_filesystems_are_read_only_with_volumes_where_containers_write(overlay: str) -> None:
    problems = [
        p for where, pod in _all_pods(overlay) for p in root_filesystem_problems(where, pod)
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_api_clients_mount_a_service_account_token(overlay: str) -> None:
    wrong = []
    for where, pod in _all_pods(overlay):
        automount = pod.get("automountServiceAccountToken")
        if where in API_CLIENTS:
            if automount is False or not pod.get("serviceAccountName"):
                wrong.append(f"{where}: needs its own service account's token")
        elif automount is not False:
            wrong.append(f"{where}: automountServiceAccountToken is not false")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_strimzi_containers_are_read_only(overlay: str) -> None:
    (kafka,) = of_kind(render(overlay), "Kafka")
    contexts = [
        kafka["spec"]["kafka"]["template"]["kafkaContainer"]["securityContext"],
        kafka["spec"]["entityOperator"]["template"]["topicOperatorContainer"]["securityContext"],
    ]
    for context in contexts:
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False


def test_the_root_filesystem_check_sees_a_missing_volume() -> None:
    container: Obj = {
        "name": "grafana",
        "securityContext": {"readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "storage", "mountPath": "/var/lib/grafana"}],
    }
    pod: Obj = {"containers": [container], "volumes": [{"name": "storage", "emptyDir": {}}]}
    assert root_filesystem_problems("p", pod) == ["p grafana: writes /tmp on a read-only root"]
    pod["volumes"] = [{"name": "storage", "configMap": {"name": "x"}}]
    assert len(root_filesystem_problems("p", pod)) == 2
    container["securityContext"] = {}
    assert root_filesystem_problems("p", pod) == ["p grafana: root filesystem is writable"]
