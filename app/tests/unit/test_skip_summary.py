"""The run's closing line names every group of skipped tests and the reason (the tool)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[3]


def load_root_conftest():
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
