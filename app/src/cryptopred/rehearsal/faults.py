"""A node lost mid-run: the pod holding given actors is SIGKILLed as a whole, kept down a while
(the node is gone; KubeRay replaces the pod later), and the rehearsal watches where Ray brings
its actors back. Where an actor runs is told by its process id, found in a pod's processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from cryptopred.rehearsal.checks import Check

Say = Callable[[str], None]
#: the stream's stage actors (cryptopred_ingest.stream.actors.actor_name)
STAGE_ACTORS = "stream-"
#: the replicas of Serve's HTTP API deployment (Ray names them SERVE_REPLICA::<app>#<name>#<id>)
API_REPLICAS = "SERVE_REPLICA::cryptopred#PredictionAPI#"


@dataclass(frozen=True)
class NodeFailure:
    """Kill the pod holding the most actors whose name starts with `actors`, `after_s` after
    the job named `during` was submitted; start it again `down_s` after the kill."""

    actors: str = STAGE_ACTORS
    during: str = "backfill"
    after_s: float = 20.0
    down_s: float = 60.0
    #: longest wait for the actors to run again elsewhere
    recover_timeout_s: float = 180.0

    @property
    def longest_s(self) -> float:
        """How long the whole failure can take, from the job's submission."""
        return self.after_s + max(self.down_s, self.recover_timeout_s) + 30.0


@dataclass
class FailureReport:
    pod: str = ""
    actors: list[str] = field(default_factory=list)
    #: actor -> pod it runs on once back
    moved_to: dict[str, str] = field(default_factory=dict)
    recovered_s: float | None = None
    error: str = ""
    #: time.monotonic() of the kill and of the pod's start again (0: not yet)
    killed_at: float = 0.0
    revived_at: float = 0.0

    def check(self) -> Check:
        name = f"node failure ({self.pod or 'no pod'})"
        if self.error:
            return Check(name, False, self.error)
        if self.recovered_s is None:
            return Check(name, False, f"{', '.join(self.actors)} did not run again elsewhere")
        where = ", ".join(f"{a} -> {p}" for a, p in sorted(self.moved_to.items()))
        return Check(name, True, f"back in {self.recovered_s:.0f} s: {where}")


def list_actors(dashboard: str, token: str) -> list[dict[str, Any]]:
    """Every actor the cluster knows (the state API), with name, state and pid."""
    answer = httpx.get(
        f"{dashboard}/api/v0/actors",
        params={"limit": 10000},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        trust_env=False,
    )
    answer.raise_for_status()
    data: Any = answer.json().get("data", {})
    while isinstance(data, dict) and "result" in data:
        data = data["result"]
    return list(data) if isinstance(data, list) else []


def placement(
    actors: list[dict[str, Any]], pod_pids: Mapping[str, set[int]], prefix: str
) -> dict[str, str | None]:
    """Name -> pod of each ALIVE actor named `prefix...` (None: its process is in no pod)."""
    out: dict[str, str | None] = {}
    for actor in actors:
        name = actor.get("name") or ""
        if not name.startswith(prefix) or actor.get("state") != "ALIVE":
            continue
        pid = actor.get("pid")
        out[name] = next((pod for pod, pids in pod_pids.items() if pid in pids), None)
    return out


def busiest_pod(placed: Mapping[str, str | None]) -> str | None:
    """The pod that holds the most of the placed actors (the first such pod by name)."""
    counts: dict[str, int] = {}
    for pod in placed.values():
        if pod is not None:
            counts[pod] = counts.get(pod, 0) + 1
    if not counts:
        return None
    return min(counts, key=lambda pod: (-counts[pod], pod))


def recovered(placed: Mapping[str, str | None], count: int, lost_pod: str) -> dict[str, str] | None:
    """Where the placed actors run once `count` of them (as many as before the loss) are
    ALIVE on pods other than `lost_pod`; None before that. Names may be new (Serve names a
    replacement replica anew)."""
    alive = {name: pod for name, pod in placed.items() if pod is not None and pod != lost_pod}
    return alive if len(alive) >= count else None


class NodeKiller:
    """Runs one NodeFailure in a thread: `pods_pids` tells each pod's process ids now, `kill`
    ends a pod and keeps it down, `revive` lets it start again."""

    def __init__(
        self,
        failure: NodeFailure,
        actors_now: Callable[[], list[dict[str, Any]]],
        pods_pids: Callable[[], dict[str, set[int]]],
        kill: Callable[[str], None],
        revive: Callable[[str], None],
        say: Say,
    ) -> None:
        self.failure = failure
        self.actors_now = actors_now
        self.pods_pids = pods_pids
        self.kill = kill
        self.revive = revive
        self.say = say
        self.report = FailureReport()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="node-killer", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float) -> FailureReport:
        """Wait for the failure to play out (the kill, the actors back, the pod replaced)."""
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        return self.report

    def _placed(self) -> dict[str, str | None]:
        return placement(self.actors_now(), self.pods_pids(), self.failure.actors)

    def _run(self) -> None:
        try:
            self._fail_and_watch()
        except Exception as exc:  # reported as a failed check, never lost in the thread
            self.report.error = f"{type(exc).__name__}: {exc}"
            self.say(f"node failure: {self.report.error}")

    def _fail_and_watch(self) -> None:
        f = self.failure
        time.sleep(f.after_s)
        placed = self._placed()
        pod = busiest_pod(placed)
        if pod is None:
            self.report.error = f"no ALIVE actor named {f.actors}* runs in a pod"
            return
        wanted = sorted(name for name, where in placed.items() if where == pod)
        count = sum(1 for where in placed.values() if where is not None)
        self.report.pod, self.report.actors = pod, wanted
        self.say(f"node failure: killing pod {pod} (holds {', '.join(wanted)})")
        self.kill(pod)
        killed_at = self.report.killed_at = time.monotonic()
        revived = False
        deadline = killed_at + max(f.recover_timeout_s, f.down_s)
        while time.monotonic() < deadline:
            if not revived and time.monotonic() - killed_at >= f.down_s:
                self._revive(pod)
                revived = True
            if self.report.recovered_s is None:
                try:
                    back = recovered(self._placed(), count, pod)
                except httpx.HTTPError as exc:  # the state API busy with the loss: next second
                    self.say(f"node failure: actors not listed ({type(exc).__name__}); again")
                    back = None
                if back is not None:
                    self.report.recovered_s = time.monotonic() - killed_at
                    self.report.moved_to = {
                        name: where for name, where in back.items() if placed.get(name) != where
                    }
                    self.say(f"node failure: actors back after {self.report.recovered_s:.0f} s")
            if revived and self.report.recovered_s is not None:
                return
            time.sleep(1.0)
        if not revived:
            self._revive(pod)

    def _revive(self, pod: str) -> None:
        self.say(f"node failure: pod {pod} starts again (replaced)")
        self.revive(pod)
        self.report.revived_at = time.monotonic()
