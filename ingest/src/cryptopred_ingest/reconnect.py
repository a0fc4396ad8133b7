"""Generic reconnect machinery: exponential backoff with jitter, a silence watchdog, a loop."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable

import tenacity
import websocket

log = logging.getLogger(__name__)


class SilenceError(ConnectionError):
    """Nothing arrived for longer than the watchdog allows."""


class Backoff:
    """Delays that double from `initial_s` up to `max_s`, each spread by +-`jitter` (relative)."""

    def __init__(
        self,
        initial_s: float = 1.0,
        max_s: float = 60.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self.attempt = 0
        self._rng = rng or random.Random()
        # past this many doublings the delay is at its cap (and factor**attempt could overflow)
        ratio = max_s / initial_s
        growing = factor > 1.0 and ratio > 1.0
        self._max_exponent = math.ceil(math.log(ratio, factor)) if growing else 0

    def next_delay_s(self) -> float:
        """The delay before the next attempt; each call counts one failed attempt."""
        exponent = min(self.attempt, self._max_exponent)
        base_s = min(self.max_s, self.initial_s * self.factor**exponent)
        self.attempt += 1
        spread = 1.0 + self.jitter * (2.0 * self._rng.random() - 1.0)
        return max(0.0, min(self.max_s, base_s * spread))

    def reset(self) -> None:
        """Forget failures after a healthy connection."""
        self.attempt = 0


class Watchdog:
    """Trips when `feed()` was not called for `timeout_s` seconds."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._last_s = clock()

    def feed(self) -> None:
        self._last_s = self._clock()

    def silent_for_s(self) -> float:
        return self._clock() - self._last_s

    def check(self) -> None:
        """Raise SilenceError once the silence is longer than the timeout."""
        silent_s = self.silent_for_s()
        if silent_s > self.timeout_s:
            raise SilenceError(f"no message for {silent_s:.1f} s (watchdog {self.timeout_s} s)")


NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionError, TimeoutError and urllib's URLError are OSErrors
    websocket.WebSocketException,
    SilenceError,
)


def run_with_reconnect(
    session: Callable[[], None],
    backoff: Backoff,
    stop: threading.Event,
    name: str,
    on_reconnect: Callable[[], None] | None = None,
    retry_on: tuple[type[BaseException], ...] = NETWORK_ERRORS,
) -> None:
    """Run `session` until `stop` is set; after it ends or fails with one of `retry_on` (network
    errors), wait a backoff delay and rerun. Any other exception is logged and propagates.

    `session` should call `backoff.reset()` once its connection is healthy. Each retry logs one
    line with the attempt number, the reason and the delay; the wait ends early on `stop`.
    """
    attempts = 0

    def attempt() -> str:
        nonlocal attempts
        attempts += 1
        if stop.is_set():
            return "stopped"
        if attempts > 1 and on_reconnect is not None:
            on_reconnect()
        try:
            session()
        except retry_on as exc:
            return "stopped" if stop.is_set() else f"{type(exc).__name__}: {exc}"
        except Exception:
            log.exception("%s: not a network error; not reconnecting", name)
            raise
        return "stopped" if stop.is_set() else "connection closed"

    def log_retry(state: tenacity.RetryCallState) -> None:
        reason = state.outcome.result() if state.outcome is not None else "?"
        delay_s = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "%s: attempt %d failed (%s); retrying in %.2f s", name, backoff.attempt, reason, delay_s
        )

    def wait(delay_s: float) -> None:
        stop.wait(delay_s)

    # every outcome but "stopped" is a failed connection: wait a backoff delay and reconnect
    tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda reason: reason != "stopped"),
        wait=lambda _state: backoff.next_delay_s(),
        sleep=wait,
        before_sleep=log_retry,
    )(attempt)
