"""The rehearsal pods' memory cgroups on this machine's cgroup v1 memory controller."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cryptopred.rehearsal.cgroups import MEMORY_ROOT, memory_cgroup

LIMIT = 256 * 1024**2


def test_no_controller_says_why(tmp_path: Path) -> None:
    group = memory_cgroup("x", LIMIT, root=tmp_path)
    assert not group.enforced
    assert group.problem is not None and "no cgroup v1 memory controller" in group.problem
    group.remove()  # nothing to remove


@pytest.mark.skipif(not os.access(MEMORY_ROOT, os.W_OK), reason="cgroup v1 memory not writable")
def test_limit_holds_a_child_and_oom_kills_it() -> None:
    group = memory_cgroup(f"cryptopred-test-{os.getpid()}", LIMIT)
    try:
        assert group.enforced, group.problem
        assert group.path is not None
        assert int((group.path / "memory.limit_in_bytes").read_text()) == LIMIT
        # a child born in the cgroup that takes twice the limit is killed by the kernel
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "b = bytearray(512 * 1024**2); b[::4096] = b'x' * (len(b) // 4096)",
            ],
            preexec_fn=group.add_self,
            timeout=60,
            check=False,
        )
        assert done.returncode == -9
        assert (group.oom_kills() or 0) >= 1
        assert (group.max_usage_bytes() or 0) >= LIMIT * 0.9
    finally:
        group.remove()
    assert group.path is not None and not group.path.exists()
