"""The node failure's logic without Ray: where actors run (by pid), which pod to kill, when
they count as back, and the killer's sequence driven by stand-in callables."""

from __future__ import annotations

import threading
from typing import Any

from cryptopred.rehearsal.faults import (
    FailureReport,
    NodeFailure,
    NodeKiller,
    busiest_pod,
    placement,
    recovered,
)

PODS = {"head": {1, 2}, "w0": {10, 11, 12}, "w1": {20, 21}}


def actor(name: str, pid: int, state: str = "ALIVE") -> dict[str, Any]:
    return {"name": name, "pid": pid, "state": state, "class_name": "StageWorker"}


def test_placement_by_pid_and_prefix_only_alive() -> None:
    actors = [
        actor("stream-candles-0", 10),
        actor("stream-sink-0", 20),
        actor("stream-indicators-0", 99),  # a pid in no pod (its node just died)
        actor("stream-old-0", 11, state="DEAD"),
        actor("ingest-live", 2),
    ]
    assert placement(actors, PODS, "stream-") == {
        "stream-candles-0": "w0",
        "stream-sink-0": "w1",
        "stream-indicators-0": None,
    }


def test_busiest_pod_then_first_by_name() -> None:
    assert busiest_pod({"a": "w1", "b": "w0", "c": "w1"}) == "w1"
    assert busiest_pod({"a": "w1", "b": "w0"}) == "w0"
    assert busiest_pod({"a": None}) is None


def test_recovered_once_as_many_run_on_other_pods_as_before() -> None:
    assert recovered({"a": "w1", "b": None}, 2, "w0") is None
    assert recovered({"a": "w1", "b": "w0"}, 2, "w0") is None
    assert recovered({"a": "w1"}, 2, "w0") is None
    assert recovered({"a": "w1", "b": "head", "c": "w0"}, 2, "w0") == {"a": "w1", "b": "head"}
    # a replacement under a new name (a Serve replica) counts
    assert recovered({"a": "w1", "a2": "w1"}, 2, "w0") == {"a": "w1", "a2": "w1"}


def test_report_checks_name_the_pod_and_why() -> None:
    assert not FailureReport(error="boom").check().ok
    lost = FailureReport(pod="w0", actors=["a"]).check()
    assert not lost.ok and "a did not run again" in lost.detail
    ok = FailureReport(pod="w0", actors=["a"], moved_to={"a": "w1"}, recovered_s=12.4).check()
    assert ok.ok and ok.name == "node failure (w0)" and ok.detail == "back in 12 s: a -> w1"


class FakeCluster:
    """Two stage actors on w0; once w0 is killed, they come back on w1 after `polls_until_back`
    looks at the actors."""

    def __init__(self, polls_until_back: int) -> None:
        self.pods = {k: set(v) for k, v in PODS.items()}
        self.actors = [actor("stream-candles-0", 10), actor("stream-sink-0", 11)]
        self.polls_until_back = polls_until_back
        self.killed: list[str] = []
        self.revived: list[str] = []
        self.lock = threading.Lock()

    def actors_now(self) -> list[dict[str, Any]]:
        with self.lock:
            if self.killed:
                self.polls_until_back -= 1
                if self.polls_until_back <= 0:
                    self.actors = [actor("stream-candles-0", 20), actor("stream-sink-0", 21)]
            return list(self.actors)

    def pods_pids(self) -> dict[str, set[int]]:
        with self.lock:
            return {k: set(v) for k, v in self.pods.items() if k not in self.killed}

    def kill(self, pod: str) -> None:
        self.killed.append(pod)

    def revive(self, pod: str) -> None:
        self.revived.append(pod)


def test_killer_kills_the_busiest_pod_and_sees_the_actors_move() -> None:
    fake = FakeCluster(polls_until_back=2)
    failure = NodeFailure(after_s=0.01, down_s=0.0, recover_timeout_s=10)
    killer = NodeKiller(
        failure, fake.actors_now, fake.pods_pids, fake.kill, fake.revive, lambda _: None
    )
    killer.start()
    report = killer.join(10)
    assert fake.killed == ["w0"] and fake.revived == ["w0"]
    assert report.actors == ["stream-candles-0", "stream-sink-0"]
    assert report.moved_to == {"stream-candles-0": "w1", "stream-sink-0": "w1"}
    assert report.check().ok


def test_killer_reports_actors_that_never_come_back_and_still_revives() -> None:
    fake = FakeCluster(polls_until_back=10**9)
    failure = NodeFailure(after_s=0.01, down_s=0.0, recover_timeout_s=1.5)
    killer = NodeKiller(
        failure, fake.actors_now, fake.pods_pids, fake.kill, fake.revive, lambda _: None
    )
    killer.start()
    report = killer.join(10)
    assert fake.revived == ["w0"]
    assert report.recovered_s is None and not report.check().ok


def test_killer_with_no_actor_to_find_fails_the_check() -> None:
    killer = NodeKiller(
        NodeFailure(after_s=0.01), lambda: [], lambda: PODS, print, print, lambda _: None
    )
    killer.start()
    report = killer.join(10)
    assert "no ALIVE actor named stream-*" in report.check().detail
