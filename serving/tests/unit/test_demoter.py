"""The Demoter carries out demotions in a thread of its own: the caller never waits for the
registry, and a demotion that fails is forgotten so the monitor may decide it again."""

from __future__ import annotations

import threading

from cryptopred_serving.calibration import CalibrationMonitor, Demotion
from cryptopred_serving.demoter import Demoter


class RecordingMonitor(CalibrationMonitor):
    """A real monitor that also records what it was told to forget."""

    def __init__(self) -> None:
        super().__init__()
        self.forgotten: list[tuple[str, str]] = []

    def forget(self, model_name: str, model_version: str) -> None:
        self.forgotten.append((model_name, model_version))
        super().forget(model_name, model_version)


def decision(name: str = "BTC-USD-60s", version: str = "3") -> Demotion:
    return Demotion(name, version, 60, "coverage 0.41 below 0.70", 1_700_000_000_000)


def test_the_caller_does_not_wait_and_the_action_runs_in_the_demoter_thread() -> None:
    release = threading.Event()
    seen: list[tuple[str, str, str, str]] = []

    def slow_registry(uri: str, name: str, reason: str) -> str | None:
        seen.append((uri, name, reason, threading.current_thread().name))
        release.wait(10)
        return "7"

    demoter = Demoter("http://mlflow:5000", RecordingMonitor(), slow_registry)
    try:
        future = demoter(decision())
        assert not future.done()  # the registry call is still blocked; the caller went on
        release.set()
        assert future.result(timeout=10) == "7"
    finally:
        demoter.close()
    ((uri, name, reason, thread),) = seen
    assert (uri, name, reason) == ("http://mlflow:5000", "BTC-USD-60s", "coverage 0.41 below 0.70")
    assert thread.startswith("demoter") and thread != threading.current_thread().name


def test_a_failed_demotion_is_forgotten_so_it_can_be_decided_again() -> None:
    def broken_registry(uri: str, name: str, reason: str) -> str | None:
        raise ConnectionError("MLflow unreachable")

    monitor = RecordingMonitor()
    demoter = Demoter("http://mlflow:5000", monitor, broken_registry)
    try:
        assert demoter(decision(version="3")).result(timeout=10) is None
    finally:
        demoter.close()
    assert monitor.forgotten == [("BTC-USD-60s", "3")]


def test_no_baseline_to_move_to_is_not_a_failure() -> None:
    monitor = RecordingMonitor()
    demoter = Demoter("http://mlflow:5000", monitor, lambda uri, name, reason: None)
    try:
        assert demoter(decision()).result(timeout=10) is None
    finally:
        demoter.close()
    assert monitor.forgotten == []  # decided once: not decided again for the same version
