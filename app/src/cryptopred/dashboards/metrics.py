"""Which Prometheus series the code exports, read from the source and named by Ray's exporter.

`defined_metrics` walks the Python source of a package for `ray.util.metrics` style
`Counter/Gauge/Histogram(...)` calls and resolves each metric's name: a literal, or an f-string
whose placeholders come from the loop or comprehension around the call (the project's stages
build their counters that way). A placeholder that cannot be resolved stays a wildcard.
`exposed_series` then registers every definition with Ray's own OpenTelemetry recorder, the one
the Ray metrics agent serves to Prometheus, and returns the sample names it exposes (with Ray's
`ray_` prefix and the `_total` / `_bucket` / `_sum` / `_count` suffixes).

`python -m cryptopred.dashboards.metrics` prints them as JSON; it sets up OpenTelemetry's
global state, so tests call it in a subprocess. Nothing here starts Ray.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["counter", "gauge", "histogram"]
KINDS: dict[str, Kind] = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram"}

PROJECT_PACKAGES = (
    "cryptopred_core",
    "cryptopred",
    "cryptopred_ingest",
    "cryptopred_training",
    "cryptopred_serving",
)
# Ray's metrics that are defined in Python: Serve (latency, requests, replicas) and the
# per-node gauges of the dashboard agent (CPU, memory).
RAY_PACKAGES = ("ray.serve", "ray.dashboard.modules.reporter")

WILDCARD = "{}"  # where a metric name has an unresolved placeholder
_MARK = "zzwildcardzz"
_WILDCARD_RE = "[a-z0-9]+"


@dataclass(frozen=True)
class MetricDef:
    kind: Kind
    name: str  # as given to the constructor; WILDCARD where a placeholder was not resolved
    where: str  # file:line


@dataclass(frozen=True)
class Scan:
    metrics: list[MetricDef]
    unresolved: list[str]  # file:line of calls whose name could not be read at all


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _metric_aliases(tree: ast.Module) -> tuple[set[str], dict[str, Kind]]:
    """Names bound to a metrics module (`from ray.util import metrics`) and to metric classes
    imported from one (`from ray.serve.metrics import Counter`)."""
    modules: set[str] = set()
    classes: dict[str, Kind] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full.endswith(".metrics"):
                    modules.add(alias.asname or alias.name)
                elif alias.name in KINDS and "metrics" in node.module:
                    classes[alias.asname or alias.name] = KINDS[alias.name]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.endswith(".metrics") and alias.asname:
                    modules.add(alias.asname)
    return modules, classes


def _module_constants(tree: ast.Module) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                try:
                    out[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    continue
    return out


def _bind(target: ast.expr, value: Any) -> dict[str, Any] | None:
    if isinstance(target, ast.Name):
        return {target.id: value}
    if isinstance(target, ast.Tuple) and isinstance(value, tuple | list):
        if len(target.elts) != len(value):
            return None
        out: dict[str, Any] = {}
        for element, item in zip(target.elts, value, strict=True):
            bound = _bind(element, item)
            if bound is None:
                return None
            out.update(bound)
        return out
    return None


def _loops(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> Iterator[tuple[ast.expr, ast.expr]]:
    """(target, iterable) of every loop and comprehension around `node`, innermost first."""
    current = parents.get(node)
    while current is not None:
        if isinstance(current, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            for generator in current.generators:
                yield generator.target, generator.iter
        elif isinstance(current, ast.For):
            yield current.target, current.iter
        current = parents.get(current)


def _bindings(
    node: ast.AST, parents: dict[ast.AST, ast.AST], constants: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every assignment of loop variables around `node` (one per combination of items)."""
    choices: list[list[dict[str, Any]]] = []
    for target, iterable in _loops(node, parents):
        try:
            items = ast.literal_eval(iterable)
        except ValueError:
            items = constants.get(iterable.id) if isinstance(iterable, ast.Name) else None
        if not isinstance(items, tuple | list):
            continue
        bound = [b for b in (_bind(target, item) for item in items) if b is not None]
        if bound:
            choices.append(bound)
    combos = []
    for combo in itertools.product(*choices):
        merged: dict[str, Any] = {}
        for part in reversed(combo):  # inner loops shadow outer ones
            merged.update(part)
        combos.append(merged)
    return combos or [{}]


def _names(
    arg: ast.expr, node: ast.AST, parents: dict[ast.AST, ast.AST], constants: dict[str, Any]
) -> list[str] | None:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if not isinstance(arg, ast.JoinedStr):
        return None
    names = []
    for binding in _bindings(node, parents, constants):
        text = ""
        for part in arg.values:
            if isinstance(part, ast.Constant):
                text += str(part.value)
            elif (
                isinstance(part, ast.FormattedValue)
                and isinstance(part.value, ast.Name)
                and isinstance(binding.get(part.value.id), str)
            ):
                text += binding[part.value.id]
            else:
                text += WILDCARD
        names.append(text)
    return sorted(set(names))


def _scan_file(path: Path, root: Path) -> Scan:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules, classes = _metric_aliases(tree)
    if not modules and not classes:
        return Scan([], [])
    constants = _module_constants(tree)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    found: list[MetricDef] = []
    unresolved: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        kind: Kind | None = None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if func.value.id in modules and func.attr in KINDS:
                kind = KINDS[func.attr]
        elif isinstance(func, ast.Name) and func.id in classes:
            kind = classes[func.id]
        if kind is None:
            continue
        where = f"{path.relative_to(root)}:{node.lineno}"
        arg = (
            node.args[0]
            if node.args
            else next((k.value for k in node.keywords if k.arg == "name"), None)
        )
        names = _names(arg, node, parents, constants) if arg is not None else None
        if not names:
            unresolved.append(where)
            continue
        found += [MetricDef(kind, name, where) for name in names]
    return Scan(found, unresolved)


def defined_metrics(packages: Iterable[str]) -> Scan:
    """Every metric definition in the source of the given packages (skipping their tests)."""
    metrics: list[MetricDef] = []
    unresolved: list[str] = []
    for package in packages:
        root = package_dir(package)
        for path in sorted(root.rglob("*.py")):
            if "tests" in path.relative_to(root).parts:
                continue
            scan = _scan_file(path, root.parent)
            metrics += scan.metrics
            unresolved += scan.unresolved
    return Scan(metrics, unresolved)


def exposed_series(definitions: Iterable[MetricDef]) -> dict[str, str]:
    """Sample-name regex -> where it is defined, as Ray's Prometheus endpoint names them.

    Registers the definitions with Ray's OpenTelemetry recorder in this process (global
    OpenTelemetry and prometheus_client state: call it in a process of its own).
    """
    from prometheus_client import REGISTRY, generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from ray._private.telemetry.open_telemetry_metric_recorder import (
        OpenTelemetryMetricRecorder,
    )

    recorder = OpenTelemetryMetricRecorder()
    where_of: dict[str, str] = {}
    for definition in definitions:
        name = definition.name.replace(WILDCARD, _MARK)
        if definition.kind == "counter":
            recorder.register_counter_metric(name, "")
            recorder.set_metric_value(name, {"probe": "1"}, 1.0)
        elif definition.kind == "gauge":
            recorder.register_gauge_metric(name, "")
            recorder.set_metric_value(name, {"probe": "1"}, 1.0)
        else:
            recorder.register_histogram_metric(name, "", [1.0])
            batch = [{"tags": {"probe": "1"}, "bucket_counts": [1, 0]}]
            recorder.record_histogram_aggregated_batch(name, batch)
        base = "ray_" + re.sub(r"[^a-zA-Z0-9_:]", "_", name)
        for suffix in ("", "_total", "_bucket", "_sum", "_count"):
            where_of.setdefault(base + suffix, definition.where)
    text = generate_latest(REGISTRY).decode()
    out: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            where = where_of.get(sample.name)
            if where is None:
                continue  # the process's own python_* / process_* series
            pattern = re.escape(sample.name).replace(_MARK, _WILDCARD_RE)
            out[pattern] = where
    return out


def main() -> int:
    project = defined_metrics(PROJECT_PACKAGES)
    ray_side = defined_metrics(RAY_PACKAGES)
    report = {
        "project": [asdict(m) for m in project.metrics],
        "unresolved": project.unresolved,
        "series": exposed_series([*project.metrics, *ray_side.metrics]),
    }
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
