"""The run's closing line names every group of skipped tests and the reason (the tool)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType, SimpleNamespace

from cryptopred_testsupport.scripts import load_script

ROOT = Path(__file__).resolve().parents[3]


def load_root_conftest() -> ModuleType:
    return load_script(ROOT / "conftest.py", "root_conftest")


def skipped(reason: str) -> SimpleNamespace:
    return SimpleNamespace(longrepr=("x.py", 1, f"Skipped: {reason}"))


def test_one_line_names_each_group_with_its_count():
    conftest = load_root_conftest()
    kubectl = "`kubectl` is not installed: the kuberay manifests cannot be checked"
    chromium = "Debian package chromium is not installed"
    line = conftest.skip_summary([skipped(kubectl), skipped(chromium), skipped(kubectl)])
    assert line == f"skipped 3 tests in 2 groups: 2 x {kubectl}; 1 x {chromium}"
    assert "\n" not in line


def test_nothing_skipped_says_nothing():
    assert load_root_conftest().skip_summary([]) is None
