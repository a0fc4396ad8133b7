"""Offline checks of the KubeRay deployment in kuberay/.

Every overlay is rendered with `kubectl kustomize` and checked: core objects against the
Kubernetes schemas (kubernetes-validate), KubeRay objects against the CRD schemas in
../shared/kuberay-crds, one Ray version everywhere, pinned images, no plaintext secrets, the
RayService's serve config and import path, the RisingWave tables against the app's table
contract, the topics, the resource budgets, fault tolerance, security contexts and network
policies. Nothing here starts Ray, a broker or a database.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from cryptopred import topics
from cryptopred.db.schema import TABLES
from cryptopred.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[3]
KUBERAY = ROOT / "kuberay"
OVERLAYS = ("dev", "prod")
NAMESPACE = "cryptopred"
RAY_KINDS = ("RayCluster", "RayJob", "RayCronJob", "RayService")
STRIMZI_GROUP = "kafka.strimzi.io"
K8S_VERSION = "1.32.0"  # the Kind node image of kuberay/kind-config.yaml
GIB = 1024**3
MIB = 1024**2

# Budgets (see kuberay/README.md). Dev: everything that runs at once within 4 vCPU / 8 GiB,
# requests and limits, with requests low enough that Kind's own pods fit beside them.
# Prod: one Civo g4s.kube.large (4 vCPU / 8 GiB; ~3.9 vCPU / ~5.9 GiB allocatable) less
# ~0.5 vCPU / ~1.4 GiB for system pods and the two operators; every pod must also fit one
# g4s.kube.medium (2 vCPU / 4 GiB; ~1.9 vCPU / ~2.7 GiB allocatable).
DEV_BUDGET = (4.0, 8 * GIB)
DEV_REQUEST_MEM = 6.5 * GIB  # leaves ~1.5 GiB of an 8 GiB Docker for Kind and the operators
PROD_REQUEST_BUDGET = (3.4, 4.5 * GIB)
PROD_POD_MAX = (1.8, 2.5 * GIB)
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)
SECRET_FIELD = re.compile(r"(password|passwd|token|secretkey|accesskey)$", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"://[^/\s:@]+:(?!\$)[^/\s@]+@")

Obj = dict[str, Any]
# libyaml's loader where PyYAML has it: the CRD files are 75k lines.
YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --- rendering -------------------------------------------------------------------------------


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` is not installed: the kuberay manifests cannot be checked")
    return path


@functools.cache
def _render_text(overlay: str) -> str:
    done = subprocess.run(
        [_tool("kubectl"), "kustomize", str(KUBERAY / "overlays" / overlay)],
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


def _usage(resources: Obj, where: str) -> Usage:
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


def running_pods(docs: list[Obj], overlay: str) -> list[tuple[str, Usage, int]]:
    """Every long-running pod (or submitter) with its resources and count; one-shot Jobs excluded.

    Strimzi's pods come from the KafkaNodePool and the Kafka's entity operator, RisingWave's
    from its helm values.
    """
    pods: list[tuple[str, Usage, int]] = []
    for obj in docs:
        if obj["kind"] == "Job":
            continue
        for where, pod, count in pod_specs(obj):
            usage: Usage = {}
            for c in pod["containers"]:
                _add(usage, _usage(c.get("resources", {}), f"{where} container {c['name']}"))
            pods.append((where, usage, count))
    for pool in of_kind(docs, "KafkaNodePool"):
        where = f"KafkaNodePool {pool['metadata']['name']}"
        pods.append((where, _usage(pool["spec"]["resources"], where), pool["spec"]["replicas"]))
    for kafka in of_kind(docs, "Kafka"):
        topic_operator = kafka["spec"]["entityOperator"]["topicOperator"]
        where = "Kafka entity operator"
        pods.append((where, _usage(topic_operator["resources"], where), 1))
    standalone = risingwave_values(overlay)["standalone"]
    pods.append(("RisingWave", _usage(standalone["resources"], "RisingWave"), 1))
    return pods


def totals(docs: list[Obj], overlay: str) -> Usage:
    total: Usage = {}
    for _, usage, count in running_pods(docs, overlay):
        _add(total, usage, count)
    return total


# --- the checks themselves (pure functions, so that tests can show they fail) -----------------


def plaintext_secrets(obj: Any, path: str = "") -> list[str]:
    """Where an object holds a credential in plain text."""
    found: list[str] = []
    if isinstance(obj, dict):
        if obj.get("kind") == "Secret":
            found.append(f"{path or '/'}: a Secret object is committed")
        for env in obj.get("env") or []:
            if isinstance(env, dict) and SECRET_NAME.search(str(env.get("name", ""))):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if "value" in env or not ref:
                    found.append(f"{path}.env[{env.get('name')}]: not from a secretKeyRef")
        for key, value in obj.items():
            if SECRET_FIELD.search(str(key)) and isinstance(value, str | int) and value != "":
                found.append(f"{path}.{key}: a literal credential")
            found += plaintext_secrets(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            found += plaintext_secrets(item, f"{path}[{i}]")
    elif isinstance(obj, str) and URL_CREDENTIALS.search(obj):
        found.append(f"{path}: a URL with a literal password")
    return found


def unknown_fields(value: Any, schema: Obj, path: str = "") -> list[str]:
    """Fields the API server would prune: not in the structural schema's properties."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if properties is not None:
                if key in properties:
                    found += unknown_fields(item, properties[key], f"{path}.{key}")
                else:
                    found.append(f"{path}.{key}")
            elif isinstance(additional, dict):
                found += unknown_fields(item, additional, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


def image_problem(image: str) -> str | None:
    """Why an image reference is not pinned to a version tag (None when it is)."""
    last = image.partition("@")[0].rsplit("/", 1)[-1]
    if ":" not in last:
        return f"{image}: no tag"
    tag = last.rsplit(":", 1)[1]
    if tag == "latest" or not tag:
        return f"{image}: tag {tag or '(empty)'} is not a version"
    return None


def _strip_sql_comments(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def _balanced(text: str, start: int) -> tuple[str, int]:
    """The text inside the parentheses opening at `start`, and the index after the closing one."""
    assert text[start] == "("
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i], i + 1
    raise AssertionError(f"unbalanced parentheses after {text[start : start + 40]!r}")


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


_CREATE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?\"?(\w+)\"?\s*\(", re.I)
_COLUMN = re.compile(r'^"?(\w+)"?\s+(.+?)(\s+NOT\s+NULL)?$', re.I | re.S)
_OPTION = re.compile(r"^([\w.]+)\s*=\s*'([^']*)'$")
_FORMAT = re.compile(r"^\s*FORMAT\s+(\w+)\s+ENCODE\s+(\w+)\s*$", re.I)


def parse_tables(sql_text: str) -> dict[str, Obj]:
    """CREATE TABLE statements: columns (name, type, nullable), key, WITH options, format."""
    tables: dict[str, Obj] = {}
    for statement in _strip_sql_comments(sql_text).split(";"):
        match = _CREATE.search(statement)
        if not match:
            assert not statement.strip(), f"unexpected SQL statement: {statement.strip()[:60]!r}"
            continue
        body, end = _balanced(statement, match.end() - 1)
        columns: list[tuple[str, str, bool]] = []
        key: tuple[str, ...] = ()
        for item in _split_top(body):
            if re.match(r"PRIMARY\s+KEY", item, re.I):
                inner, _ = _balanced(item, item.index("("))
                key = tuple(k.strip().strip('"') for k in inner.split(","))
                continue
            col = _COLUMN.match(item)
            assert col, f"cannot parse column {item!r}"
            sql_type = " ".join(col.group(2).upper().split())
            columns.append((col.group(1), sql_type, col.group(3) is None))
        rest = statement[end:]
        options: dict[str, str] = {}
        with_match = re.match(r"\s*WITH\s*\(", rest, re.I)
        if with_match:
            inner, after = _balanced(rest, with_match.end() - 1)
            for option in _split_top(inner):
                opt = _OPTION.match(option)
                assert opt, f"cannot parse option {option!r}"
                options[opt.group(1)] = opt.group(2)
            rest = rest[after:]
        fmt = _FORMAT.match(rest) if rest.strip() else None
        assert fmt or not rest.strip(), f"unexpected text after table {match.group(1)}: {rest!r}"
        tables[match.group(1)] = {
            "columns": columns,
            "primary_key": key,
            "options": options,
            "format": (fmt.group(1).upper(), fmt.group(2).upper()) if fmt else None,
        }
    return tables


def _load_render_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_serve_config", KUBERAY / "render_serve_config.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- tests ---------------------------------------------------------------------------------------


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


def test_rayservice_import_path_resolves_to_the_serving_module() -> None:
    service = one(render("dev"), "RayService", "cryptopred-serve")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    paths = [app["import_path"] for app in config["applications"]]
    assert paths == ["cryptopred_serving.app:build_app"]
    module_name, attr = paths[0].split(":")
    try:
        spec = importlib.util.find_spec(module_name)
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        pytest.skip(f"serving app module not built yet: {module_name}")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attr, None)), f"{module_name} has no callable {attr}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rayservice_embeds_exactly_the_serve_yaml(overlay: str) -> None:
    script = _load_render_script()
    service = one(render(overlay), "RayService", "cryptopred-serve")
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    serve_yaml = yaml.safe_load((ROOT / "serving" / "serve_config.yaml").read_text())
    assert embedded["applications"] == serve_yaml["applications"]
    assert embedded["http_options"] == {"host": "0.0.0.0", "port": 8000}
    assert service["spec"]["serveConfigV2"] == script.serve_config_v2()
    assert script.main(["--check"]) == 0, "run `make serve-config`"
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    ports = {p["containerPort"] for c in head["containers"] for p in c.get("ports", [])}
    assert 8000 in ports
    # the same HTTP ingress as the embedded stack: HAProxy straight to the API replicas
    env = {e["name"]: e.get("value") for c in head["containers"] for e in c.get("env", [])}
    assert env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"
    assert env.get("RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD") == "0"


def test_render_script_rejects_a_serve_yaml_without_applications(tmp_path: Path) -> None:
    script = _load_render_script()
    bad = tmp_path / "serve.yaml"
    bad.write_text("applications: []\n")
    with pytest.raises(ValueError, match="applications"):
        script.serve_config_v2(bad)


def test_risingwave_tables_match_the_table_contract() -> None:
    sql_text = (KUBERAY / "base" / "risingwave" / "init.sql").read_text()
    tables = parse_tables(sql_text)
    # The SQL creates the tables that ingest topics (and the outcomes); the app's create_schema
    # adds any other (internal) table of the contract with CREATE TABLE IF NOT EXISTS.
    ingesting = {topics.CANDLES, topics.TECHNICAL_INDICATORS, topics.PREDICTIONS}
    assert ingesting <= set(tables) <= set(TABLES), set(tables) ^ set(TABLES)
    env = one(render("dev"), "ConfigMap", "cryptopred-env")["data"]
    for name, parsed in tables.items():
        table = TABLES[name]
        expected = [(c.name, c.sql_type("risingwave"), c.nullable) for c in table.columns]
        assert parsed["columns"] == expected, name
        assert parsed["primary_key"] == table.primary_key, name
    for topic in sorted(ingesting):
        parsed = tables[topic]
        assert parsed["options"] == {
            "connector": "kafka",
            "topic": topic,
            "properties.bootstrap.server": env["CRYPTOPRED_KAFKA_BOOTSTRAP"],
            "scan.startup.mode": "earliest",
        }
        assert parsed["format"] == ("PLAIN", "JSON")
    assert env["CRYPTOPRED_DB_DIALECT"] == "risingwave"


def test_sql_parser_sees_a_wrong_type() -> None:
    sql_text = (KUBERAY / "base" / "risingwave" / "init.sql").read_text()
    broken = sql_text.replace('"volume" DOUBLE PRECISION', '"volume" REAL', 1)
    column = dict((n, t) for n, t, _ in parse_tables(broken)["candles"]["columns"])
    assert column["volume"] == "REAL"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_init_job_runs_the_committed_sql(overlay: str) -> None:
    docs = render(overlay)
    sql_map = one(docs, "ConfigMap", "risingwave-init-sql")
    assert sql_map["data"]["init.sql"] == (KUBERAY / "base/risingwave/init.sql").read_text()
    job = one(docs, "Job", "risingwave-init")
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"][0]["configMap"]["name"] == "risingwave-init-sql"
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert (env["PGHOST"], env["PGPORT"], env["PGDATABASE"]) == ("risingwave", "4566", "dev")
    values = risingwave_values(overlay)
    assert (values["fullnameOverride"], values["service"]["port"]) == ("risingwave", 4566)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_is_kraft_with_the_architecture_topics(overlay: str) -> None:
    docs = render(overlay)
    (kafka,) = of_kind(docs, "Kafka")
    name = kafka["metadata"]["name"]
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    (pool,) = of_kind(docs, "KafkaNodePool")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == name
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    kafka_topics = of_kind(docs, "KafkaTopic")
    assert sorted(t["spec"]["topicName"] for t in kafka_topics) == sorted(topics.ALL_TOPICS)
    for topic in kafka_topics:
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == name
        assert topic["spec"]["partitions"] >= 1
    plain = next(x for x in kafka["spec"]["kafka"]["listeners"] if x["name"] == "plain")
    env = one(docs, "ConfigMap", "cryptopred-env")["data"]
    assert env["CRYPTOPRED_KAFKA_BOOTSTRAP"] == f"{name}-kafka-bootstrap:{plain['port']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_app_settings_in_the_cluster_are_valid(overlay: str) -> None:
    env = one(render(overlay), "ConfigMap", "cryptopred-env")["data"]
    fields = {key.removeprefix(ENV_PREFIX).lower(): value for key, value in env.items()}
    assert all(key.startswith(ENV_PREFIX) for key in env)
    assert set(fields) <= set(Settings.model_fields), set(fields) - set(Settings.model_fields)
    settings = Settings(**fields)
    assert settings.db_dialect == "risingwave"
    assert settings.db_url == "postgresql://root@risingwave:4566/dev"
    assert settings.mlflow_uri == "http://mlflow:5000"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ray_jobs_run_the_app_entry_points_on_the_raycluster(overlay: str) -> None:
    docs = render(overlay)
    clusters = {c["metadata"]["name"] for c in of_kind(docs, "RayCluster")}
    stream, backfill = one(docs, "RayJob", "stream"), one(docs, "RayJob", "backfill")
    assert stream["spec"]["entrypoint"] == "python -m cryptopred_ingest.stream.job"
    assert backfill["spec"]["entrypoint"] == (
        "cryptopred ingest backfill --pairs BTC/USD,ETH/USD --since 24h"
    )
    cron = one(docs, "RayCronJob", "retrain")
    assert cron["spec"]["schedule"] == "0 */6 * * *"
    for spec in (stream["spec"], backfill["spec"], cron["spec"]["jobTemplate"]):
        assert spec["clusterSelector"]["ray.io/cluster"] in clusters
    # The cron entrypoint runs the mounted script, which loops over the pairs.
    script_path = cron["spec"]["jobTemplate"]["entrypoint"].split()[-1]
    cluster = one(
        docs, "RayCluster", cron["spec"]["jobTemplate"]["clusterSelector"]["ray.io/cluster"]
    )
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
    volume = next(v for v in head["volumes"] if v.get("configMap"))
    script_dir, script_name = script_path.rsplit("/", 1)
    assert mounts[volume["name"]] == script_dir
    script = one(docs, "ConfigMap", volume["configMap"]["name"])["data"][script_name]
    assert re.search(r"for pair in .*; do", script)
    assert 'cryptopred train --pair "${pair}" --candle-seconds 60 --workers 2' in script


def _job_rule_problems(spec: Obj, gates: dict[str, bool]) -> list[str]:
    """The KubeRay operator's admission rules for a RayJob spec (its ValidateRayJobSpec)."""
    problems = []
    selector = spec.get("clusterSelector") or {}
    if bool(selector) == ("rayClusterSpec" in spec):
        problems.append("set exactly one of clusterSelector and rayClusterSpec")
    if selector:
        if not selector.get("ray.io/cluster"):
            problems.append("clusterSelector needs ray.io/cluster")
        if spec.get("backoffLimit", 0) > 0:
            problems.append("backoffLimit is incompatible with clusterSelector")
        if spec.get("submissionMode") == "SidecarMode":
            problems.append("clusterSelector is not supported in SidecarMode")
    if not spec.get("shutdownAfterJobFinishes") and spec.get("ttlSecondsAfterFinished", 0) > 0:
        problems.append("ttlSecondsAfterFinished needs shutdownAfterJobFinishes")
    rules = (spec.get("deletionStrategy") or {}).get("deletionRules") or []
    if spec.get("deletionStrategy") and not gates.get("RayJobDeletionPolicy"):
        problems.append("deletionStrategy needs the RayJobDeletionPolicy feature gate")
    if selector and {r["policy"] for r in rules} - {"DeleteSelf", "DeleteNone"}:
        problems.append("only DeleteSelf/DeleteNone rules work with clusterSelector")
    if rules and spec.get("shutdownAfterJobFinishes"):
        problems.append("shutdownAfterJobFinishes and deletionRules are mutually exclusive")
    template = spec.get("submitterPodTemplate")
    if template and template["spec"].get("restartPolicy") != "Never":
        problems.append("the submitter pod needs restartPolicy Never")
    return problems


def _cluster_rule_problems(spec: Obj, annotations: dict[str, str]) -> list[str]:
    """The operator's rules for a Ray cluster spec (its ValidateRayClusterSpec)."""
    problems = []
    autoscaling = spec.get("enableInTreeAutoscaling", False)
    for group in spec.get("workerGroupSpecs") or []:
        low, high = group.get("minReplicas"), group.get("maxReplicas")
        if not autoscaling and (low is None or high is None):
            problems.append(f"worker group {group['groupName']} needs minReplicas and maxReplicas")
        elif low is not None and high is not None and not low <= group.get("replicas", low) <= high:
            problems.append(f"worker group {group['groupName']}: replicas outside min..max")
    head_env = {
        e["name"] for e in spec["headGroupSpec"]["template"]["spec"]["containers"][0].get("env", [])
    }
    if spec.get("gcsFaultToleranceOptions"):
        if "ray.io/ft-enabled" in annotations:
            problems.append("use gcsFaultToleranceOptions or the ft-enabled annotation, not both")
        if head_env & {"REDIS_PASSWORD", "RAY_REDIS_ADDRESS"}:
            problems.append("Redis settings belong in gcsFaultToleranceOptions")
    elif "RAY_REDIS_ADDRESS" in head_env:
        problems.append("RAY_REDIS_ADDRESS without gcsFaultToleranceOptions")
    return problems


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
        problems += [f"{kind} {name}: {p}" for job in jobs for p in _job_rule_problems(job, gates)]
        problems += [
            f"{kind} {name}: {p}" for c in clusters for p in _cluster_rule_problems(c, annotations)
        ]
    assert not problems, problems


def test_admission_rule_checks_catch_a_bad_job() -> None:
    bad = {
        "clusterSelector": {"ray.io/cluster": "cryptopred"},
        "backoffLimit": 2,
        "ttlSecondsAfterFinished": 60,
        "deletionStrategy": {"deletionRules": [{"policy": "DeleteCluster", "condition": {}}]},
    }
    assert len(_job_rule_problems(bad, {"RayJobDeletionPolicy": False})) == 4


def test_operator_turns_the_raycronjob_gate_on() -> None:
    values = yaml.safe_load((KUBERAY / "helm" / "kuberay-operator-values.yaml").read_text())
    gates = {g["name"]: g["enabled"] for g in values["featureGates"]}
    assert gates["RayCronJob"] is True


def test_dev_fits_four_vcpu_and_eight_gib() -> None:
    total = totals(render("dev"), "dev")
    cpu_budget, mem_budget = DEV_BUDGET
    assert total["req_cpu"] <= total["lim_cpu"] <= cpu_budget, total
    assert total["req_mem"] <= total["lim_mem"] <= mem_budget, total
    assert total["req_mem"] <= DEV_REQUEST_MEM, total


def test_prod_fits_one_large_or_two_medium_civo_nodes() -> None:
    pods = running_pods(render("prod"), "prod")
    total = totals(render("prod"), "prod")
    assert total["req_cpu"] <= PROD_REQUEST_BUDGET[0], total
    assert total["req_mem"] <= PROD_REQUEST_BUDGET[1], total
    for where, usage, _ in pods:
        assert usage["req_cpu"] <= PROD_POD_MAX[0] and usage["req_mem"] <= PROD_POD_MAX[1], where
        assert usage["lim_mem"] <= PROD_POD_MAX[1], f"{where}: limit larger than a medium node"
    dev = totals(render("dev"), "dev")
    assert total["lim_cpu"] > dev["lim_cpu"] and total["lim_mem"] > dev["lim_mem"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    for obj in render(overlay):
        for where, pod, _ in pod_specs(obj):
            for container in containers(pod):
                _usage(container.get("resources", {}), f"{where} {container['name']}")


def test_prod_has_gcs_fault_tolerance_on_redis_and_dev_does_not() -> None:
    prod = render("prod")
    services = {s["metadata"]["name"]: s for s in of_kind(prod, "Service")}
    clusters = [
        one(prod, "RayCluster", "cryptopred")["spec"],
        one(prod, "RayService", "cryptopred-serve")["spec"]["rayClusterConfig"],
    ]
    for cluster in clusters:
        options = cluster["gcsFaultToleranceOptions"]
        host, port = options["redisAddress"].split(":")
        assert host in services and int(port) in {
            p["port"] for p in services[host]["spec"]["ports"]
        }
        assert options["redisPassword"]["valueFrom"]["secretKeyRef"]["name"] == "redis"
        annotations = cluster.get("metadata", {}).get("annotations", {})
        assert "ray.io/ft-enabled" not in annotations
    serve = clusters[1]
    assert serve["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert [g["groupName"] for g in serve["workerGroupSpecs"]] == ["serve"]
    dev = render("dev")
    assert "gcsFaultToleranceOptions" not in one(dev, "RayCluster", "cryptopred")["spec"]
    assert not of_kind([d for d in dev if d["metadata"]["name"] == "redis"], "Deployment")


def _run_as_non_root(pod: Obj) -> bool:
    if (pod.get("securityContext") or {}).get("runAsNonRoot") is True:
        return True
    return all((c.get("securityContext") or {}).get("runAsNonRoot") for c in containers(pod))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root(overlay: str) -> None:
    docs = render(overlay)
    checked = 0
    for obj in docs:
        for where, pod, _ in pod_specs(obj):
            assert _run_as_non_root(pod), f"{where}: runAsNonRoot is not set"
            checked += 1
    for kafka in of_kind(docs, "Kafka"):
        assert kafka["spec"]["kafka"]["template"]["pod"]["securityContext"]["runAsNonRoot"]
        assert kafka["spec"]["entityOperator"]["template"]["pod"]["securityContext"]["runAsNonRoot"]
    assert risingwave_values(overlay)["standalone"]["podSecurityContext"]["runAsNonRoot"]
    assert checked >= 10


def _selects(policy: Obj, labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return bool(wanted) and wanted.items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_keep_databases_and_kafka_in_the_namespace(overlay: str) -> None:
    docs = render(overlay)
    policies = of_kind(docs, "NetworkPolicy")
    (kafka,) = of_kind(docs, "Kafka")
    external_ports = {
        x["port"] for x in kafka["spec"]["kafka"]["listeners"] if x["type"] != "internal"
    }
    targets = {
        "risingwave": risingwave_values(overlay)["standalone"]["podLabels"],
        "mlflow-postgres": one(docs, "StatefulSet", "mlflow-postgres")["spec"]["template"][
            "metadata"
        ]["labels"],
        "minio": one(docs, "Deployment", "minio")["spec"]["template"]["metadata"]["labels"],
        "kafka": {"strimzi.io/cluster": kafka["metadata"]["name"], "strimzi.io/kind": "Kafka"},
    }
    if overlay == "prod":
        targets["redis"] = one(docs, "Deployment", "redis")["spec"]["template"]["metadata"][
            "labels"
        ]
    for target, labels in targets.items():
        matching = [p for p in policies if _selects(p, labels)]
        assert matching, f"no NetworkPolicy selects {target}"
        for policy in matching:
            assert policy["spec"]["policyTypes"] == ["Ingress"]
            for rule in policy["spec"]["ingress"]:
                if "from" not in rule:  # only the external Kafka listener of the dev overlay
                    assert target == "kafka" and overlay == "dev", policy["metadata"]["name"]
                    assert {p["port"] for p in rule["ports"]} <= external_ports
                    continue
                for peer in rule["from"]:
                    if "namespaceSelector" in peer:
                        assert target == "kafka"
                        assert peer["namespaceSelector"]["matchLabels"] == {
                            "kubernetes.io/metadata.name": "strimzi"
                        }
                    else:
                        assert peer == {"podSelector": {}}, peer


def test_kind_maps_the_dev_node_ports() -> None:
    docs = render("dev")
    kind_config = yaml.safe_load((KUBERAY / "kind-config.yaml").read_text())
    host_port = {
        m["containerPort"]: m["hostPort"] for m in kind_config["nodes"][0]["extraPortMappings"]
    }
    by_target = {}
    for service in of_kind(docs, "Service"):
        if service["spec"].get("type") == "NodePort":
            for port in service["spec"]["ports"]:
                assert port["nodePort"] in host_port, service["metadata"]["name"]
                by_target[port["targetPort"]] = port["nodePort"]
    assert {8265, 8000, 3000, 5000} <= set(by_target), "Ray dashboard, Serve, Grafana, MLflow"
    (kafka,) = of_kind(docs, "Kafka")
    external = next(x for x in kafka["spec"]["kafka"]["listeners"] if x["type"] == "nodeport")
    assert external["configuration"]["bootstrap"]["nodePort"] in host_port
    for broker in external["configuration"]["brokers"]:
        assert host_port[broker["nodePort"]] == broker["advertisedPort"]


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


MAKE_TARGETS = (
    "cluster-up",
    "cluster-down",
    "deploy",
    "port-forward",
    "ray-dashboard",
    "submit-stream",
    "submit-train",
    "build-image",
    "kind-load",
    "secrets",
    "serve-config",
)


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    # Without the flags of an outer `make test` (e.g. -n, -j or variable overrides).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        [_tool("make"), "--no-print-directory", "-f", "kuberay/Makefile.mk", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_makefile_has_the_cluster_targets() -> None:
    makefile = (KUBERAY / "Makefile.mk").read_text()
    for target in MAKE_TARGETS:
        assert re.search(rf"^{target}:.*## ", makefile, re.M), f"no documented target {target}"
    assert "ray job submit" in makefile and "$(KIND) create cluster" in makefile


def test_make_deploy_refuses_an_unknown_env_and_picks_the_overlay() -> None:
    bad = _make("-n", "deploy", "ENV=staging")
    assert bad.returncode != 0 and "ENV must be dev or prod" in bad.stderr
    prod = _make("-n", "deploy", "ENV=prod")
    assert prod.returncode == 0, prod.stderr
    assert "kubectl kustomize kuberay/overlays/prod" in prod.stdout
    assert "-f kuberay/overlays/prod/risingwave-values.yaml" in prod.stdout
    dev = _make("-n", "deploy", "ENV=dev")
    assert dev.returncode == 0 and "risingwave-values.yaml" not in dev.stdout


def test_dashboards_configmap_holds_every_json_file(tmp_path: Path) -> None:
    (tmp_path / "market.json").write_text('{"title": "Market"}')
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "health.json").write_text('{"title": "Pipeline health"}')
    (tmp_path / "notes.md").write_text("not a dashboard")
    done = _make("-s", "kuberay-dashboards-yaml", f"DASHBOARDS_DIR={tmp_path}")
    assert done.returncode == 0, done.stderr
    configmap = yaml.safe_load(done.stdout)
    assert configmap["metadata"]["name"] == "grafana-dashboards"
    assert set(configmap["data"]) == {"market.json", "health.json"}
    grafana = one(render("dev"), "Deployment", "grafana")["spec"]["template"]["spec"]
    volume = next(v for v in grafana["volumes"] if v["name"] == "dashboards")
    assert volume["configMap"] == {"name": "grafana-dashboards", "optional": True}
    mounts = {m["name"]: m["mountPath"] for m in grafana["containers"][0]["volumeMounts"]}
    provider = yaml.safe_load((KUBERAY / "base/grafana/dashboards-provider.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["dashboards"]
