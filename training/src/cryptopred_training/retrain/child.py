"""One training run as a child process, bounded in time and memory."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class ChildResult:
    returncode: int | None  # None: stopped by the watchdog
    reason: str  # why it failed ("" when it succeeded)
    peak_rss_mb: float
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def tree_rss_mb(proc: psutil.Process) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    total = 0
    for member in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += member.memory_info().rss
    return total / 2**20


def kill_tree(proc: psutil.Process, timeout_s: float = 10.0) -> None:
    """SIGTERM a process and its descendants, SIGKILL what is left after `timeout_s`."""
    members = [proc, *proc.children(recursive=True)]
    for member in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(members, timeout=timeout_s)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=timeout_s)


def last_error_line(log_path: Path, max_chars: int = 500) -> str:
    """The child's own `error: ...` line if it printed one, else its last non-empty line."""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")[:max_chars]
    return lines[-1][:max_chars] if lines else ""


def run_child(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    *,
    timeout_s: float,
    max_rss_mb: float,
    nice: int = 0,
    poll_s: float = 1.0,
    stop: threading.Event | None = None,
) -> ChildResult:
    """Run `argv` with its output in `log_path`; stop it (and its children) when it runs past
    `timeout_s`, their resident memory passes `max_rss_mb` or `stop` is set."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    peak = 0.0
    with log_path.open("wb") as out:
        popen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        proc = psutil.Process(popen.pid)
        if nice:
            with contextlib.suppress(psutil.Error):
                proc.nice(nice)
        reason = ""
        while popen.poll() is None:
            try:
                peak = max(peak, tree_rss_mb(proc))
            except psutil.NoSuchProcess:
                continue
            elapsed = time.monotonic() - started
            if stop is not None and stop.is_set():
                reason = "stopped: the scheduler was stopped"
            elif peak > max_rss_mb:
                reason = f"stopped: its processes used {peak:,.0f} MiB, above {max_rss_mb:g} MiB"
            elif elapsed > timeout_s:
                reason = f"stopped: still running after {timeout_s:g} s"
            if reason:
                kill_tree(proc)
                popen.wait()
                return ChildResult(None, reason, peak, time.monotonic() - started)
            if stop is not None:
                stop.wait(poll_s)
            else:
                time.sleep(poll_s)
    seconds = time.monotonic() - started
    if popen.returncode != 0:
        line = last_error_line(log_path) or "no output"
        return ChildResult(popen.returncode, f"exit {popen.returncode}: {line}", peak, seconds)
    return ChildResult(0, "", peak, seconds)
