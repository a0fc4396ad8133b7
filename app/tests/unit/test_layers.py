"""Imports run one way: core is the ground, ingest/training/serving stand on it, app is the roof.

Every `import` in a member's source (lazy ones inside functions too) and every string that names
a module of a member (`importlib.import_module("...")`, `"pkg.mod:attr"`) is read with `ast`:
core imports no other member, no member below the roof imports the roof, and each member
declares in its pyproject every other member it imports.
"""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Import name -> layer; a member may import members of its own layer or below, never above.
LAYERS = {
    "cryptopred_core": 0,
    "cryptopred_ingest": 1,
    "cryptopred_training": 1,
    "cryptopred_serving": 1,
    "cryptopred": 2,
    # dev-only test support: above everything (testsupport's own test keeps it out of the rest)
    "cryptopred_testsupport": 3,
}
MODULE_STRING = re.compile(r"^([A-Za-z_]\w*)(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$")


@dataclass(frozen=True)
class Member:
    folder: Path
    distribution: str
    package: str
    dependencies: frozenset[str]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def members(root: Path) -> list[Member]:
    """The workspace members named in the root pyproject, with their declared dependencies."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    found = []
    for folder_name in config["tool"]["uv"]["workspace"]["members"]:
        folder = root / folder_name
        member = tomllib.loads((folder / "pyproject.toml").read_text())
        (package_path,) = member["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
        requirements = member["project"].get("dependencies", [])
        declared = {_normalise(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements}
        found.append(
            Member(
                folder=folder,
                distribution=_normalise(member["project"]["name"]),
                package=Path(package_path).name,
                dependencies=frozenset(declared),
            )
        )
    return found


def imported_packages(path: Path, packages: set[str]) -> set[tuple[str, int]]:
    """(top-level package, line) of every member package `path` imports or names as a module."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            module = node.value.split(":")[0]
            names = [module] if MODULE_STRING.match(node.value) and "." in module else []
        for name in names:
            top = name.split(".")[0]
            if top in packages:
                found.add((top, getattr(node, "lineno", 0)))
    return found


def violations(root: Path) -> list[str]:
    """One line per import that runs upward or names a member the importer does not declare."""
    workspace = members(root)
    by_package = {m.package: m for m in workspace}
    problems = []
    for member in workspace:
        for path in sorted((member.folder / "src").rglob("*.py")):
            where = path.relative_to(root)
            for package, line in sorted(imported_packages(path, set(by_package))):
                if package == member.package:
                    continue
                if LAYERS[package] > LAYERS[member.package]:
                    problems.append(f"{where}:{line}: {member.package} imports {package} (upward)")
                if by_package[package].distribution not in member.dependencies:
                    problems.append(
                        f"{where}:{line}: {package} is not declared in "
                        f"{member.folder.name}/pyproject.toml"
                    )
    return problems


def test_every_member_has_a_layer() -> None:
    assert {m.package for m in members(ROOT)} == set(LAYERS)


def test_no_import_runs_upward_and_every_member_import_is_declared() -> None:
    assert violations(ROOT) == []


def _workspace(root: Path, deps: dict[str, list[str]], sources: dict[str, str]) -> None:
    names = {
        "core": "cryptopred_core",
        "app": "cryptopred",
        "ingest": "cryptopred_ingest",
        "training": "cryptopred_training",
        "serving": "cryptopred_serving",
    }
    (root / "pyproject.toml").write_text(
        f"[tool.uv.workspace]\nmembers = {list(names)!r}\n".replace("'", '"')
    )
    for folder, package in names.items():
        src = root / folder / "src" / package
        src.mkdir(parents=True)
        (src / "__init__.py").write_text(sources.get(folder, ""))
        dist = "cryptopred-app" if folder == "app" else f"cryptopred-{folder}"
        (root / folder / "pyproject.toml").write_text(
            f'[project]\nname = "{dist}"\ndependencies = {deps.get(folder, [])!r}\n'.replace(
                "'", '"'
            )
            + f'[tool.hatch.build.targets.wheel]\npackages = ["src/{package}"]\n'
        )


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    _workspace(
        tmp_path,
        {"core": ["cryptopred-app"], "training": ["cryptopred-core"]},
        {
            "core": "def f():\n    import cryptopred.cli\n",
            "training": "from cryptopred.stack import manager\n",
        },
    )
    found = violations(tmp_path)
    assert any(
        "core/src/cryptopred_core/__init__.py:2: cryptopred_core imports" in p for p in found
    )
    assert any("cryptopred_training imports cryptopred (upward)" in p for p in found)
    assert any("cryptopred is not declared in training/pyproject.toml" in p for p in found)


def test_the_check_sees_an_undeclared_or_string_import(tmp_path: Path) -> None:
    _workspace(
        tmp_path,
        {"serving": ["cryptopred-core"], "app": ["cryptopred-core"]},
        {
            "serving": "from cryptopred_training import predictor\n",
            "app": 'import importlib\nimportlib.import_module("cryptopred_ingest.cli")\n',
        },
    )
    assert violations(tmp_path) == [
        "app/src/cryptopred/__init__.py:2: cryptopred_ingest is not declared in app/pyproject.toml",
        "serving/src/cryptopred_serving/__init__.py:1: cryptopred_training is not declared in "
        "serving/pyproject.toml",
    ]
