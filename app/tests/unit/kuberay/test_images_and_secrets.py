"""One Ray version, pinned images and charts, no plaintext secret, the images make builds."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from cryptopred_testsupport.kuberay.checks import image_problem, plaintext_secrets
from cryptopred_testsupport.kuberay.render import (
    KUBERAY,
    OVERLAYS,
    Obj,
    containers,
    locked_version,
    of_kind,
    pod_specs,
    ray_version_in_lock,
    render,
    risingwave_values,
)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_ray_version_across_lock_image_and_manifests(overlay: str) -> None:
    version = ray_version_in_lock()
    found = []
    for obj in render(overlay):
        spec = obj.get("spec", {})
        clusters = {
            "RayCluster": [spec],
            "RayService": [spec.get("rayClusterConfig")],
            "RayJob": [spec.get("rayClusterSpec")],
            "RayCronJob": [spec.get("jobTemplate", {}).get("rayClusterSpec")],
        }.get(obj["kind"], [])
        for cluster in filter(None, clusters):
            assert cluster.get("rayVersion") == version, f"{obj['kind']} {obj['metadata']['name']}"
            found.append(obj["kind"])
    assert {"RayCluster", "RayService"} <= set(found)
    dockerfile = (KUBERAY / "Dockerfile").read_text()
    assert re.search(rf"^ARG RAY_VERSION={re.escape(version)}$", dockerfile, re.M)
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-py311 AS ray$", dockerfile, re.M)


def test_mlflow_image_pins_the_locked_client_versions() -> None:
    dockerfile = (KUBERAY / "Dockerfile").read_text()
    for arg, package in (("MLFLOW_VERSION", "mlflow"), ("PSYCOPG_VERSION", "psycopg")):
        pinned = re.search(rf"^ARG {arg}=(\S+)$", dockerfile, re.M)
        assert pinned and pinned.group(1) == locked_version(package), arg


def _all_images(docs: list[Obj], overlay: str) -> list[str]:
    images = [c["image"] for obj in docs for _, pod, _ in pod_specs(obj) for c in containers(pod)]
    rw = risingwave_values(overlay)["image"]
    images.append(f"{rw['repository']}:{rw['tag']}")
    kind_config = yaml.safe_load((KUBERAY / "kind-config.yaml").read_text())
    images += [node["image"] for node in kind_config["nodes"]]
    dockerfile = (KUBERAY / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, re.M))
    for ref in re.findall(r"^FROM (\S+)", dockerfile, re.M):
        images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref))
    return images


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_image_is_pinned_to_a_version(overlay: str) -> None:
    images = _all_images(render(overlay), overlay)
    assert len(images) >= 10
    problems = [p for p in map(image_problem, images) if p]
    assert not problems, problems
    for kafka in of_kind(render(overlay), "Kafka"):
        assert re.fullmatch(r"\d+\.\d+\.\d+", str(kafka["spec"]["kafka"]["version"]))


def test_image_check_rejects_latest_and_untagged() -> None:
    assert image_problem("grafana/grafana:latest")
    assert image_problem("grafana/grafana")
    assert image_problem("localhost:5000/cryptopred-ray")
    assert image_problem("localhost:5000/cryptopred-ray:0.1.0") is None


def test_charts_are_pinned_in_the_makefile() -> None:
    makefile = (KUBERAY / "Makefile.mk").read_text()
    lines = re.sub(r"\\\n\s*", " ", makefile).splitlines()  # join continuation lines
    installs = [line for line in lines if "upgrade --install" in line]
    assert len(installs) == 3
    for install in installs:
        assert "--version $(" in install, install
    for var in ("KUBERAY_VERSION", "STRIMZI_VERSION", "RISINGWAVE_CHART_VERSION"):
        assert re.search(rf"^{var} \?= \d+\.\d+\.\d+$", makefile, re.M), var


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_plaintext_secret_is_committed(overlay: str) -> None:
    problems = []
    for obj in render(overlay):
        problems += plaintext_secrets(obj, f"{obj['kind']} {obj['metadata']['name']}")
    problems += plaintext_secrets(risingwave_values(overlay), "risingwave values")
    assert not problems, problems
    for path in KUBERAY.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), path


def test_secret_check_catches_plaintext() -> None:
    leaky = {
        "kind": "Deployment",
        "spec": {
            "containers": [
                {"env": [{"name": "DB_PASSWORD", "value": "hunter2"}]},
                {"env": [{"name": "API_TOKEN", "valueFrom": {"configMapKeyRef": {"key": "t"}}}]},
                {"args": ["--uri", "postgresql://mlflow:hunter2@db:5432/mlflow"]},
            ]
        },
        "redisPassword": "hunter2",
    }
    assert len(plaintext_secrets(leaky)) == 4
    assert plaintext_secrets({"kind": "Secret", "data": {}})
    assert not plaintext_secrets({"args": ["postgresql://u:${PASSWORD}@db/x"]})


def _secret_refs(obj: Any) -> Iterator[Obj]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "secretKeyRef":
                yield value
            else:
                yield from _secret_refs(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from _secret_refs(item)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_used_by_the_manifests_are_made_by_make_secrets(overlay: str) -> None:
    used = {ref["name"] for obj in render(overlay) for ref in _secret_refs(obj)}
    assert {"mlflow-postgres", "minio", "grafana-admin"} <= used
    rw_minio = risingwave_values(overlay)["stateStore"].get("minio", {})
    if rw_minio.get("enabled"):
        used.add(rw_minio["authentication"]["existingSecretName"])
    makefile = (KUBERAY / "Makefile.mk").read_text()
    made = set(re.findall(r"\$\(call kr_secret,([\w-]+),", makefile))
    assert used <= made, f"secrets not created by `make secrets`: {used - made}"
    assert "openssl rand" in makefile


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_use_the_images_make_builds(overlay: str) -> None:
    makefile = (KUBERAY / "Makefile.mk").read_text()
    tag = re.search(r"^IMAGE_TAG \?= (\S+)$", makefile, re.M)
    assert tag, "Makefile.mk sets no default IMAGE_TAG"
    docs = render(overlay)
    ours = {
        c["image"]
        for obj in docs
        for _, pod, _ in pod_specs(obj)
        for c in containers(pod)
        if c["image"].startswith("cryptopred-")
    }
    assert ours == {f"cryptopred-ray:{tag.group(1)}", f"cryptopred-mlflow:{tag.group(1)}"}
    dockerfile = (KUBERAY / "Dockerfile").read_text()
    for target in ("ray", "mlflow"):  # `make build-image` builds these two targets
        assert re.search(rf"^FROM \S+ AS {target}$", dockerfile, re.M), target
        assert f"--target {target} -t $({target.upper()}_IMAGE)" in makefile
