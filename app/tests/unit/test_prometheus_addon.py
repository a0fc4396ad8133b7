"""The Prometheus add-on (kuberay/addons/prometheus) behind the Pipeline health dashboard:
renders, matches the Kubernetes schemas, is the address Grafana's `prometheus` datasource reads,
and scrapes the Ray pods' metrics port. Offline: `kubectl kustomize` only."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ADDON = ROOT / "kuberay" / "addons" / "prometheus"
DATASOURCES = ROOT / "kuberay" / "base" / "grafana" / "datasources.yaml"
K8S_VERSION = "1.32.0"  # the Kind node image of kuberay/kind-config.yaml


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("`kubectl` is not installed: the add-on cannot be rendered")
    done = subprocess.run(
        [kubectl, "kustomize", str(ADDON)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def test_objects_match_the_kubernetes_schemas(objects: list[dict[str, Any]]) -> None:
    kinds = sorted(o["kind"] for o in objects)
    expected = ["ConfigMap", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]
    assert kinds == expected
    for obj in objects:
        assert obj["metadata"]["namespace"] == "cryptopred"
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_grafana_reads_the_addon_service(objects: list[dict[str, Any]]) -> None:
    datasources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    (prometheus,) = [d for d in datasources if d["uid"] == "prometheus"]
    service = one(objects, "Service")
    port = service["spec"]["ports"][0]["port"]
    assert prometheus["url"] == f"http://{service['metadata']['name']}:{port}"


def test_it_scrapes_the_ray_pods_metrics_port_with_least_privilege(
    objects: list[dict[str, Any]],
) -> None:
    config_map = one(objects, "ConfigMap")
    deployment = one(objects, "Deployment")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": config_map["metadata"]["name"]}} in volumes
    config = yaml.safe_load(config_map["data"]["prometheus.yml"])
    (job,) = config["scrape_configs"]
    (discovery,) = job["kubernetes_sd_configs"]
    assert discovery["role"] == "pod" and discovery["namespaces"]["names"] == ["cryptopred"]
    keeps = {
        r["source_labels"][0]: r["regex"]
        for r in job["relabel_configs"]
        if r.get("action") == "keep"
    }
    assert keeps == {
        "__meta_kubernetes_pod_label_ray_io_is_ray_node": "yes",
        "__meta_kubernetes_pod_container_port_name": "metrics",  # KubeRay's port for 8080
    }
    (rule,) = one(objects, "Role")["rules"]
    assert rule["resources"] == ["pods"] and set(rule["verbs"]) == {"get", "list", "watch"}
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.split(":")[-1] not in ("", "latest")
