"""A memory cgroup (v1) per rehearsal pod, holding it to its container's memory limit."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")


@dataclass
class MemoryCgroup:
    """`<root>/<name>` with `memory.limit_in_bytes` set, or the reason it could not be."""

    name: str
    limit_bytes: int
    path: Path | None = None
    problem: str | None = None

    @property
    def enforced(self) -> bool:
        return self.path is not None

    def add_self(self) -> None:
        """Move the calling process into the cgroup (for Popen's preexec_fn: its children
        are born inside)."""
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def max_usage_bytes(self) -> int | None:
        """The kernel's high-water mark of the cgroup (RSS and page cache)."""
        return _read_int(self.path / "memory.max_usage_in_bytes") if self.path else None

    def oom_kills(self) -> int | None:
        """How many times the kernel's OOM killer acted in the cgroup (`memory.oom_control`)."""
        if self.path is None:
            return None
        try:
            for line in (self.path / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except OSError:
            return None
        return None

    def pids(self) -> list[int]:
        if self.path is None:
            return []
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def remove(self, timeout_s: float = 10.0) -> None:
        """Kill what is left in the cgroup (only processes this rehearsal started live there)
        and remove it."""
        if self.path is None:
            return
        deadline = time.monotonic() + timeout_s
        while self.pids() and time.monotonic() < deadline:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def memory_cgroup(name: str, limit_bytes: int, root: Path = MEMORY_ROOT) -> MemoryCgroup:
    """Create the cgroup `<root>/<name>` limited to `limit_bytes` (and as much swap+memory),
    or return one that says why the limit is not enforced."""
    group = MemoryCgroup(name, limit_bytes)
    if not (root / "memory.limit_in_bytes").exists():
        group.problem = f"no cgroup v1 memory controller at {root}"
        return group
    path = root / name
    try:
        path.mkdir(exist_ok=True)
        (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
        memsw = path / "memory.memsw.limit_in_bytes"
        if memsw.exists():  # no swap beyond the limit either
            memsw.write_text(str(limit_bytes))
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.rmdir()
        group.problem = f"cannot write {path}: {exc.strerror or exc}"
        return group
    written = _read_int(path / "memory.limit_in_bytes")
    if written is None or written > limit_bytes:
        group.problem = f"{path} did not take the limit (reads {written})"
        with contextlib.suppress(OSError):
            path.rmdir()
        return group
    group.path = path
    return group
