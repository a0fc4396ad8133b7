"""The per-pod usage table: PSS sampled over a real process tree, CPU seconds, the limit."""

from __future__ import annotations

import os
import subprocess
import sys

from cryptopred.rehearsal.report import MIB, Usage, format_table, process_tree

HOLD_64_MIB = "import time; b = bytearray(64 * 1024**2); b[::4096] = b'x' * 16384; time.sleep(30)"


def test_sample_counts_children_and_keeps_the_peak() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLD_64_MIB,
        ]
    )
    try:
        usage = Usage("pod", 1024 * MIB, enforced=False)
        tree = process_tree(os.getpid())
        assert child.pid in {p.pid for p in tree}
        for _ in range(100):  # until the child has touched its pages
            if usage.sample(process_tree(os.getpid())) > 64 * MIB:
                break
        assert usage.peak_pss_bytes >= 64 * MIB
        assert usage.cpu_s > 0
        usage.sample([])  # nothing alive: the peak stays
        assert usage.peak_pss_bytes >= 64 * MIB
    finally:
        child.kill()
        child.wait()


def test_table_marks_unenforced_limits_and_oom() -> None:
    rows = [
        Usage("cryptopred-head", 1664 * MIB, enforced=True, peak_pss_bytes=832 * MIB),
        Usage("cryptopred-serve-head", 1408 * MIB, enforced=False, peak_pss_bytes=1500 * MIB),
    ]
    rows[0].oom_kills = 1
    table = format_table(rows).splitlines()
    assert "peak PSS MiB" in table[0]
    assert "832" in table[2] and "50%" in table[2] and "1 OOM kill(s)" in table[2]
    assert "NOT enforced" in table[3] and "107%" in table[3]
    assert not rows[1].below_limit and not rows[0].below_limit


def test_a_restart_fails_the_pod_unless_the_rehearsal_killed_it() -> None:
    from cryptopred.rehearsal.checks import memory_check

    usage = Usage("w0", 1024 * MIB, True, peak_pss_bytes=500 * MIB)
    assert memory_check(usage).ok
    usage.restarts = 1  # it exited by itself: a crash or an OOM kill
    assert not memory_check(usage).ok
    usage.kills = 1  # the node failure the rehearsal made
    check = memory_check(usage)
    assert check.ok and "1 restarts (1 after a node failure)" in check.detail
    usage.peak_pss_bytes = 2048 * MIB
    assert not memory_check(usage).ok
