"""Every object parses, fits its schema and passes the KubeRay operator's admission rules."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from cryptopred_testsupport.kuberay.checks import (
    cluster_rule_problems,
    job_rule_problems,
    unknown_fields,
)
from cryptopred_testsupport.kuberay.render import (
    K8S_VERSION,
    KUBERAY,
    NAMESPACE,
    OVERLAYS,
    RAY_KINDS,
    STRIMZI_GROUP,
    YAML_LOADER,
    Obj,
    group_of,
    one,
    render,
)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_parses_and_lives_in_the_namespace(overlay: str) -> None:
    docs = render(overlay)
    for obj in docs:
        assert {"apiVersion", "kind", "metadata"} <= obj.keys(), obj
        assert obj["metadata"].get("name"), obj
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]
    kinds = {d["kind"] for d in docs}
    expected = {*RAY_KINDS, "Kafka", "KafkaNodePool", "KafkaTopic", "NetworkPolicy", "Job"}
    assert expected <= kinds, f"missing kinds: {expected - kinds}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_match_the_kubernetes_schemas(overlay: str) -> None:
    checked = 0
    for obj in render(overlay):
        group = group_of(obj)
        if group in ("ray.io", STRIMZI_GROUP):
            continue  # KubeRay: next test; Strimzi: no schema offline (parsed above only)
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message}")
        checked += 1
    assert checked >= 15


@functools.cache
def _crd_schemas(crd_dir: Path) -> dict[tuple[str, str], Obj]:
    schemas: dict[tuple[str, str], Obj] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        for crd in yaml.load_all(path.read_text(), Loader=YAML_LOADER):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schema = version["schema"]["openAPIV3Schema"]
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kuberay_objects_match_the_crd_schemas(overlay: str, shared_dir: Path) -> None:
    crd_dir = shared_dir / "kuberay-crds"
    if not crd_dir.is_dir():
        pytest.skip(f"{crd_dir} is absent: no KubeRay CRDs to validate against")
    schemas = _crd_schemas(crd_dir)
    seen = set()
    for obj in render(overlay):
        if obj["kind"] not in RAY_KINDS:
            continue
        schema = schemas.get((obj["apiVersion"], obj["kind"]))
        assert schema, f"no CRD serves {obj['apiVersion']} {obj['kind']}"
        where = f"{obj['kind']} {obj['metadata']['name']}"
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=str)
        assert not errors, f"{where}: {errors[0].json_path}: {errors[0].message}"
        assert not unknown_fields(obj, schema), (
            f"{where}: unknown fields {unknown_fields(obj, schema)}"
        )
        seen.add(obj["kind"])
    assert seen == set(RAY_KINDS)


def test_unknown_field_check_catches_a_typo(shared_dir: Path) -> None:
    crd_dir = shared_dir / "kuberay-crds"
    if not crd_dir.is_dir():
        pytest.skip(f"{crd_dir} is absent: no KubeRay CRDs to validate against")
    cluster = one(render("dev"), "RayCluster", "cryptopred")
    schema = _crd_schemas(crd_dir)[(cluster["apiVersion"], "RayCluster")]
    broken = {**cluster, "spec": {**cluster["spec"], "rayVersoin": "2.60.0"}}
    assert unknown_fields(broken, schema) == [".spec.rayVersoin"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ray_resources_pass_the_operator_admission_rules(overlay: str) -> None:
    values = yaml.safe_load((KUBERAY / "helm" / "kuberay-operator-values.yaml").read_text())
    gates = {g["name"]: g["enabled"] for g in values["featureGates"]}
    problems = []
    for obj in render(overlay):
        kind, spec, name = obj["kind"], obj.get("spec", {}), obj["metadata"]["name"]
        if kind in RAY_KINDS:
            assert re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", name), f"{kind} {name}"
        annotations = obj["metadata"].get("annotations", {})
        jobs = {"RayJob": [spec], "RayCronJob": [spec.get("jobTemplate", {})]}.get(kind, [])
        clusters = {"RayCluster": [spec], "RayService": [spec.get("rayClusterConfig", {})]}.get(
            kind, []
        )
        clusters += [job["rayClusterSpec"] for job in jobs if "rayClusterSpec" in job]
        problems += [f"{kind} {name}: {p}" for job in jobs for p in job_rule_problems(job, gates)]
        problems += [
            f"{kind} {name}: {p}" for c in clusters for p in cluster_rule_problems(c, annotations)
        ]
    assert not problems, problems


def test_admission_rule_checks_catch_a_bad_job() -> None:
    bad = {
        "clusterSelector": {"ray.io/cluster": "cryptopred"},
        "backoffLimit": 2,
        "ttlSecondsAfterFinished": 60,
        "deletionStrategy": {"deletionRules": [{"policy": "DeleteCluster", "condition": {}}]},
    }
    assert len(job_rule_problems(bad, {"RayJobDeletionPolicy": False})) == 4


def test_operator_turns_the_raycronjob_gate_on() -> None:
    values = yaml.safe_load((KUBERAY / "helm" / "kuberay-operator-values.yaml").read_text())
    gates = {g["name"]: g["enabled"] for g in values["featureGates"]}
    assert gates["RayCronJob"] is True
