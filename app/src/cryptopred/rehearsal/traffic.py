"""Requests sent to Serve while one of its nodes is lost: when each went, whether it was answered,
and what that says about the switch to the remaining replicas."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from cryptopred.rehearsal.checks import Check


@dataclass(frozen=True)
class Sent:
    at: float  # time.monotonic() when it went
    ok: bool  # answered 200
    detail: str = ""


@dataclass(frozen=True)
class TrafficSummary:
    total: int
    failed: int
    #: answered while the node was down (kill to its pod's start again)
    answered_while_down: int
    #: the longest run of failures, first to last failed request
    longest_failing_s: float
    #: every request of the last `settle_s` before the end was answered
    answering_at_end: bool
    first_error: str = ""

    def check(self, pod: str) -> Check:
        share = self.failed / self.total if self.total else 1.0
        ok = self.total > 0 and self.answered_while_down > 0 and self.answering_at_end
        detail = (
            f"{self.total} requests, {self.failed} failed ({share:.1%}); "
            f"{self.answered_while_down} answered while the node was down; longest failing "
            f"stretch {self.longest_failing_s:.1f} s"
        )
        if self.first_error:
            detail += f"; first error: {self.first_error}"
        return Check(f"requests while {pod} was lost", ok, detail)


def summarize(
    sent: list[Sent], down_from: float, down_to: float, settle_s: float
) -> TrafficSummary:
    """What the requests of `sent` (in order) show about a node down from `down_from` to
    `down_to` (time.monotonic())."""
    failed = [s for s in sent if not s.ok]
    longest, start = 0.0, None
    for s in sent:
        if not s.ok:
            start = s.at if start is None else start
            longest = max(longest, s.at - start)
        else:
            start = None
    end = sent[-1].at if sent else 0.0
    tail = [s for s in sent if s.at >= end - settle_s]
    return TrafficSummary(
        total=len(sent),
        failed=len(failed),
        answered_while_down=sum(1 for s in sent if s.ok and down_from <= s.at <= down_to),
        longest_failing_s=longest,
        answering_at_end=bool(tail) and all(s.ok for s in tail),
        first_error=failed[0].detail if failed else "",
    )


@dataclass
class Traffic:
    """GET `url` every `interval_s` in a thread, each on a new connection (as clients behind a
    load balancer arrive), with no retry: a failed request counts as failed."""

    url: str
    interval_s: float = 0.1
    timeout_s: float = 2.0
    sent: list[Sent] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="serve-traffic", daemon=True)
        self._thread.start()

    def stop(self) -> list[Sent]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5)
        return list(self.sent)

    def _loop(self) -> None:
        while not self._stop.is_set():
            at = time.monotonic()
            try:
                answer = httpx.get(self.url, timeout=self.timeout_s, trust_env=False)
                self.sent.append(Sent(at, answer.status_code == 200, str(answer.status_code)))
            except httpx.HTTPError as exc:
                self.sent.append(Sent(at, False, f"{type(exc).__name__}: {exc}"[:160]))
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - at)))
