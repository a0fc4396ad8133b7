"""Event-time pacing for replays: `max` (no waiting) or X times faster than real time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def parse_speed(text: str) -> float | None:
    """`max` -> None (as fast as possible); a positive number -> that speed-up factor."""
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ValueError(f"speed must be 'max' or a positive number, got {text!r}") from None
    if not speed > 0 or speed == float("inf"):
        raise ValueError(f"speed must be 'max' or a positive number, got {text!r}")
    return speed


class Pacer:
    """Sleeps so that event time `ts_ms` is reached `speed` times faster than it happened."""

    def __init__(
        self,
        speed: float | None,
        clock: Callable[[], float] = time.monotonic,
        stop: threading.Event | None = None,
    ) -> None:
        self.speed = speed
        self._clock = clock
        self._stop = stop or threading.Event()
        self._origin: tuple[int, float] | None = None

    def wait_until(self, ts_ms: int) -> None:
        if self.speed is None:
            return
        if self._origin is None:
            self._origin = (ts_ms, self._clock())
            return
        first_ts_ms, start_s = self._origin
        due_s = start_s + (ts_ms - first_ts_ms) / 1000.0 / self.speed
        delay_s = due_s - self._clock()
        if delay_s > 0:
            self._stop.wait(delay_s)
