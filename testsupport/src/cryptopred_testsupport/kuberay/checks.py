"""The kuberay/ manifest checks as pure functions, so that tests can show each one fails."""

from __future__ import annotations

import re
from typing import Any

from cryptopred_testsupport.kuberay.render import Obj, of_kind

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)
SECRET_FIELD = re.compile(r"(password|passwd|token|secretkey|accesskey)$", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"://[^/\s:@]+:(?!\$)[^/\s@]+@")


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
            literal = isinstance(value, str | int) and not isinstance(value, bool)
            if SECRET_FIELD.search(str(key)) and literal and value != "":
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


def not_digest_pinned(images: list[str]) -> list[str]:
    """The images not pinned by a sha256 digest, sorted, once each."""
    pinned = re.compile(r"@sha256:[0-9a-f]{64}$")
    return sorted({image for image in images if not pinned.search(image)})


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


def job_rule_problems(spec: Obj, gates: dict[str, bool]) -> list[str]:
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


def cluster_rule_problems(spec: Obj, annotations: dict[str, str]) -> list[str]:
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


def training_problems(docs: list[Obj]) -> list[str]:
    """Why a training job could run on a long-lived cluster: every RayJob or RayCronJob that
    trains (component `training`) must bring its own cluster and select none."""
    problems = []
    for obj in [*of_kind(docs, "RayJob"), *of_kind(docs, "RayCronJob")]:
        if obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "training":
            continue
        meta = obj["metadata"]
        where = f"{obj['kind']} {meta.get('name', meta.get('generateName', '?'))}"
        spec = obj["spec"].get("jobTemplate", obj["spec"])
        if "clusterSelector" in spec:
            problems.append(f"{where}: selects the running cluster {spec['clusterSelector']}")
        if "rayClusterSpec" not in spec:
            problems.append(f"{where}: has no cluster of its own (rayClusterSpec)")
        rules = (spec.get("deletionStrategy") or {}).get("deletionRules", [])
        ended = {
            r["condition"].get("jobStatus") or r["condition"].get("jobDeploymentStatus")
            for r in rules
            if r["policy"] == "DeleteCluster" and r["condition"].get("ttlSeconds", 0) == 0
        }
        if not {"SUCCEEDED", "FAILED", "Failed"} <= ended:
            problems.append(f"{where}: its cluster outlives the run ({sorted(ended)})")
    return problems
