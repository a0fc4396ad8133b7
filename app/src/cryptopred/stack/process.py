"""Generic helpers for the stack's processes: spawn detached, record, probe, stop by pid."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil


class PartError(Exception):
    """A part of the stack could not start; the message names the part and the cause."""

    def __init__(self, part: str, cause: str) -> None:
        super().__init__(f"{part}: {cause}")
        self.part = part
        self.cause = cause


@dataclass
class ProcessRecord:
    """What `up` wrote down about a process it started, so `down` can stop exactly it."""

    part: str
    pid: int
    create_time: float
    address: str
    log: str

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return abs(proc.create_time() - self.create_time) < 1.0 and proc.is_running()
        except psutil.Error:
            return False


def read_record(path: Path) -> ProcessRecord | None:
    try:
        return ProcessRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_record(path: Path, record: ProcessRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(record)))


def spawn(
    part: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None
) -> psutil.Process:
    """Start argv in its own session (so its whole group can be stopped), output to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        try:
            popen = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        except OSError as exc:
            raise PartError(part, f"cannot run {argv[0]}: {exc.strerror}") from None
    return psutil.Process(popen.pid)


def stop_group(pid: int, timeout_s: float = 15, leader_signal: int | None = None) -> None:
    """Stop the process group led by pid: leader_signal to the leader first if given (for
    programs that shut their children down on it), then SIGTERM to the group, then SIGKILL."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    if pgid != pid:  # not a group leader we started: stop only that process
        _signal_wait([pid], timeout_s)
        return
    members = [p.pid for p in psutil.process_iter() if _pgid(p.pid) == pgid]
    steps: list[tuple[Callable[[], None], float]] = []
    if leader_signal is not None:
        steps.append((lambda: os.kill(pid, leader_signal), timeout_s))
    steps.append((lambda: os.killpg(pgid, signal.SIGTERM), timeout_s))
    steps.append((lambda: os.killpg(pgid, signal.SIGKILL), 5.0))
    for send, wait_s in steps:
        with contextlib.suppress(ProcessLookupError):
            send()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(_alive(m) for m in members):
            _reap(members)
            time.sleep(0.05)
        if not any(_alive(m) for m in members):
            return


def _signal_wait(pids: list[int], timeout_s: float) -> None:
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.terminate()
            procs.append(proc)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        proc.kill()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def http_ok(url: str, timeout_s: float = 2) -> bool:
    """Whether a GET of `url` answers 2xx within `timeout_s`."""
    try:
        return httpx.get(url, timeout=timeout_s, trust_env=False).is_success
    except (httpx.HTTPError, httpx.InvalidURL):
        return False


def wait_until(
    part: str,
    check: Callable[[], bool],
    timeout_s: float,
    proc: psutil.Process | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll check() until true; fail early, naming the cause, if proc dies first."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if proc is not None and not _running(proc):
            raise PartError(part, f"exited during start{_last_line(log_path)}")
        if time.monotonic() > deadline:
            raise PartError(part, f"not healthy after {timeout_s:.0f} s{_last_line(log_path)}")
        time.sleep(0.25)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def last_line(text: str, width: int = 300) -> str:
    """The last non-blank line of `text`, cut to `width` ("" when there is none)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:width] if lines else ""


def _last_line(log_path: Path | None) -> str:
    if log_path is None or not log_path.exists():
        return ""
    line = last_line(log_path.read_text(errors="replace"), 200)
    return f" (last log line: {line}; log: {log_path})" if line else f" (log: {log_path})"
