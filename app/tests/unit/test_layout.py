"""The workspace's test layout: every test module gets a name of its own.

Each member's tests/ is a package named `tests`, so `ingest/tests/unit/test_cli.py` and
`app/tests/unit/test_cli.py` both import as `tests.unit.test_cli`: pytest then runs the first
module twice and the second never (this happened).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def dotted_names(roots: list[Path]) -> dict[str, list[Path]]:
    """Every Python file under the test roots by the module name pytest imports it as."""
    names: dict[str, list[Path]] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if path.name == "__init__.py":
                continue
            parts = path.relative_to(root.parent).with_suffix("").parts
            names.setdefault(".".join(parts), []).append(path)
    return names


def test_no_two_test_modules_import_under_one_name() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    roots = [ROOT / p for p in config["tool"]["pytest"]["ini_options"]["testpaths"]]
    assert len(roots) >= 4 and all(root.name == "tests" for root in roots)
    names = dotted_names(roots)
    assert len(names) > 40
    clashes = {name: paths for name, paths in names.items() if len(paths) > 1}
    assert not clashes, clashes


def test_the_check_sees_a_clash(tmp_path: Path) -> None:
    for member in ("one", "two"):
        (tmp_path / member / "tests" / "unit").mkdir(parents=True)
        (tmp_path / member / "tests" / "unit" / "test_cli.py").write_text("")
    names = dotted_names([tmp_path / "one" / "tests", tmp_path / "two" / "tests"])
    assert len(names["tests.unit.test_cli"]) == 2
