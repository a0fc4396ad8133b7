"""Runtime packages carry no test code: no source file of a runtime member imports pytest or
cryptopred_testsupport (at any depth, lazily or through importlib), and no runtime member
declares either as a dependency."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TEST_ONLY_MEMBER = "testsupport"
FORBIDDEN_MODULES = frozenset({"pytest", "_pytest", "cryptopred_testsupport"})
FORBIDDEN_DISTRIBUTIONS = frozenset({"pytest", "cryptopred-testsupport"})


def runtime_members() -> list[Path]:
    """Every workspace member of the root pyproject except the test support member."""
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    return [ROOT / name for name in workspace["members"] if name != TEST_ONLY_MEMBER]


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) for every import statement anywhere in the source, and every
    `importlib.import_module("...")` or `__import__("...")` call with a literal name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            literal = first.value if isinstance(first, ast.Constant) else None
            if name in ("import_module", "__import__") and isinstance(literal, str):
                found.append((node.lineno, literal))
    return found


def forbidden_imports(source: str) -> list[tuple[int, str]]:
    """The imports of `source` whose top-level package is test-only."""
    return [(n, m) for n, m in imported_modules(source) if m.split(".")[0] in FORBIDDEN_MODULES]


def distribution_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement string."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def test_the_checker_finds_test_imports_at_any_depth() -> None:
    source = (
        "import os\n"
        "from cryptopred_core.records import Trade\n"
        "def f():\n"
        "    import pytest\n"
        "    from cryptopred_testsupport.fake_kraken import FakeKraken\n"
        "    return importlib.import_module('_pytest.fixtures')\n"
    )
    assert forbidden_imports(source) == [
        (4, "pytest"),
        (5, "cryptopred_testsupport.fake_kraken"),
        (6, "_pytest.fixtures"),
    ]
    assert forbidden_imports("import pytest_timeout\nfrom .testing import x\n") == []


def test_runtime_sources_import_no_test_code() -> None:
    members = runtime_members()
    sources = [path for member in members for path in sorted((member / "src").rglob("*.py"))]
    assert len(members) >= 4 and len(sources) > 50, (members, len(sources))
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sources
        for line, module in forbidden_imports(path.read_text())
    ]
    assert offenders == [], "runtime code imports test code:\n" + "\n".join(offenders)


def test_runtime_members_do_not_depend_on_test_code() -> None:
    offenders: list[str] = []
    for member in runtime_members():
        project = tomllib.loads((member / "pyproject.toml").read_text())["project"]
        requirements = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            requirements.extend(extra)
        offenders.extend(
            f"{member.name}: {req}"
            for req in requirements
            if distribution_name(req) in FORBIDDEN_DISTRIBUTIONS
        )
    assert offenders == []
