"""What each rehearsal pod used: peak PSS over its process tree (sampled), CPU seconds, restarts."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import psutil

MIB = 1024**2


def process_tree(root_pid: int) -> list[psutil.Process]:
    """`root_pid` and every descendant still alive."""
    try:
        root = psutil.Process(root_pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


@dataclass
class Usage:
    """Running totals for one pod, fed by `sample`."""

    pod: str
    limit_bytes: int
    enforced: bool
    peak_pss_bytes: int = 0
    restarts: int = 0
    #: of the restarts, those after the rehearsal killed the pod on purpose (a node failure)
    kills: int = 0
    oom_kills: int = 0
    cgroup_peak_bytes: int | None = None
    overridden: bool = False  # the limit is not the manifest's
    _cpu_s_by_process: dict[tuple[int, float], float] = field(default_factory=dict)

    @property
    def cpu_s(self) -> float:
        return sum(self._cpu_s_by_process.values())

    def sample(self, processes: Iterable[psutil.Process]) -> int:
        """Add one sample of the pod's processes; returns their PSS in bytes now."""
        pss = 0
        for proc in processes:
            with contextlib.suppress(psutil.Error):
                with proc.oneshot():
                    times = proc.cpu_times()
                    key = (proc.pid, proc.create_time())
                    pss += proc.memory_full_info().pss
                self._cpu_s_by_process[key] = times.user + times.system
        self.peak_pss_bytes = max(self.peak_pss_bytes, pss)
        return pss

    @property
    def below_limit(self) -> bool:
        return self.peak_pss_bytes < self.limit_bytes and self.oom_kills == 0


def format_table(rows: list[Usage]) -> str:
    """One line per pod: peak PSS against the limit, the cgroup's own peak, CPU s, restarts."""
    header = (
        f"{'pod':<34} {'peak PSS MiB':>12} {'limit MiB':>9} {'of limit':>8} "
        f"{'cgroup peak MiB':>15} {'CPU s':>8} {'restarts':>8}  limit"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        share = row.peak_pss_bytes / row.limit_bytes
        cgroup = "-" if row.cgroup_peak_bytes is None else f"{row.cgroup_peak_bytes / MIB:.0f}"
        enforced = "enforced" if row.enforced else "NOT enforced"
        if row.overridden:
            enforced += ", limit overridden"
        if row.oom_kills:
            enforced += f", {row.oom_kills} OOM kill(s)"
        lines.append(
            f"{row.pod:<34} {row.peak_pss_bytes / MIB:>12.0f} {row.limit_bytes / MIB:>9.0f} "
            f"{share:>8.0%} {cgroup:>15} {row.cpu_s:>8.1f} {row.restarts:>8}  {enforced}"
        )
    return "\n".join(lines)
