"""One `ray start --block` process per rehearsal pod, in its memory cgroup, restarted on exit."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from cryptopred.rehearsal.cgroups import MemoryCgroup, memory_cgroup
from cryptopred.rehearsal.manifest import Pod, ray_start_argv
from cryptopred.rehearsal.report import Usage, process_tree
from cryptopred.stack.process import stop_group
from cryptopred_core.ports import free_port

RAY_BIN = Path(sys.executable).with_name("ray")


@dataclass
class PodPorts:
    """Where a pod listens on this machine (the container's fixed ports would collide)."""

    ray_start: dict[str, int]
    gcs: int | None = None
    dashboard: int | None = None

    @classmethod
    def pick(cls, head: bool) -> PodPorts:
        node = {
            "dashboard-agent-listen-port": free_port(),
            "metrics-export-port": free_port(),
        }
        if not head:
            return cls(node)
        gcs, dashboard = free_port(), free_port()
        node |= {"port": gcs, "dashboard-port": dashboard, "ray-client-server-port": free_port()}
        return cls(node, gcs, dashboard)


@dataclass
class PodProcess:
    """A rehearsal pod: its `ray start` process, cgroup, log and usage."""

    pod: Pod
    env: dict[str, str]
    ports: PodPorts
    head_gcs: str | None
    workdir: Path
    cgroup: MemoryCgroup
    usage: Usage
    #: the pod's own /tmp (an emptyDir on the cluster), made when its env is: a short path,
    #: for the socket paths Ray makes in it
    tmp_root: Path = field(
        default_factory=lambda: Path(tempfile.gettempdir()) / f"crp-{secrets.token_hex(4)}"
    )
    proc: psutil.Process | None = None
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / "ray-start.log"

    def argv(self) -> list[str]:
        return [str(RAY_BIN), *ray_start_argv(self.pod, self.ports.ray_start, self.head_gcs)]

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env=self.env,
                start_new_session=True,
                preexec_fn=self.cgroup.add_self,
            )
        self.proc = psutil.Process(self._popen.pid)

    def alive(self) -> bool:
        if self._popen is None:
            return False
        return self._popen.poll() is None

    def pids(self) -> set[int]:
        """Every process of the pod now: its `ray start` tree and its cgroup's members."""
        tree = process_tree(self._popen.pid) if self._popen is not None else []
        return {p.pid for p in tree} | set(self.cgroup.pids())

    def sample(self) -> int:
        """PSS of the pod's processes now (also folded into `usage`)."""
        pids = set(self.cgroup.pids())
        procs = process_tree(self._popen.pid) if self._popen is not None else []
        seen = {p.pid for p in procs}
        for pid in pids - seen:  # reparented strays still in the pod's cgroup
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:
                continue
        pss = self.usage.sample(procs)
        self.usage.cgroup_peak_bytes = self.cgroup.max_usage_bytes()
        self.usage.oom_kills = self.cgroup.oom_kills() or 0
        return pss

    def restart(self) -> None:
        """Start it again after it exited (what the kubelet does with a crashed container)."""
        self.usage.restarts += 1
        self.start()

    def kill(self) -> None:
        """SIGKILL the whole pod at once (a node lost), without a clean `ray stop`."""
        for proc in [*process_tree(self._popen.pid if self._popen else -1)]:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                continue
        for pid in self.cgroup.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
        if self._popen is not None:
            self._popen.wait(timeout=10)

    def stop(self) -> None:
        """`ray start --block` stops its node on SIGINT; then what remains in its group and
        its cgroup is ended, and the cgroup removed."""
        if self._popen is not None and self._popen.poll() is None:
            stop_group(self._popen.pid, timeout_s=20, leader_signal=signal.SIGINT)
            self._popen.wait(timeout=10)
        self.cgroup.remove()


def pod_process(
    pod: Pod,
    env: Mapping[str, str],
    head_gcs: str | None,
    workdir: Path,
    cgroup_prefix: str,
) -> PodProcess:
    """A pod ready to start: free ports, its cgroup (or the reason it has none)."""
    cgroup = memory_cgroup(f"{cgroup_prefix}-{pod.name}", pod.memory_limit_bytes)
    usage = Usage(pod.name, pod.memory_limit_bytes, cgroup.enforced)
    return PodProcess(pod, dict(env), PodPorts.pick(pod.head), head_gcs, workdir, cgroup, usage)
