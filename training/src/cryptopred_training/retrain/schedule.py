"""The retraining schedule as pure functions: durations, slots, windows and cron expressions."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
OFF = frozenset({"", "off", "none", "never", "0"})


def parse_duration_s(text: str) -> float:
    """`90s`, `30m`, `6h`, `7d` or plain seconds -> seconds; ValueError naming the text."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 6h or 7d")
    seconds = float(match.group(1)) * _UNITS_S[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return seconds


def parse_every_s(text: str) -> float | None:
    """The retraining interval in seconds, or None when retraining is off (`off`, empty, or a
    zero duration such as `0` or `0h`)."""
    if text.strip().lower() in OFF:
        return None
    match = _DURATION.fullmatch(text.strip().lower())
    if match is not None and float(match.group(1)) == 0:
        return None
    return parse_duration_s(text)


def format_duration(seconds: float) -> str:
    """The largest whole unit: 21600 -> `6h`, 90 -> `90s`."""
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds}s"


def cron_schedule(every_s: float) -> str:
    """The cron expression that fires every `every_s` (UTC), for the cluster's RayCronJob.

    Cron can only repeat on a grid of the clock, so the interval must divide an hour (whole
    minutes) or a day (whole hours), or be one day (a step of days restarts every month, so
    it would not keep the interval); anything else is a ValueError.
    """
    if every_s <= 0:
        raise ValueError(f"{every_s:g} s is not a positive interval")
    if every_s % 60 != 0:
        raise ValueError(f"{format_duration(every_s)} is not whole minutes, so no cron can run it")
    minutes = int(every_s // 60)
    if minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    if minutes % 60 == 0 and minutes < 1440 and 1440 % minutes == 0:
        hours = minutes // 60
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    if minutes == 1440:
        return "0 0 * * *"
    raise ValueError(
        f"{format_duration(every_s)} does not divide an hour or a day, so no cron can run it"
    )


@dataclass(frozen=True)
class Window:
    """The history one run trains on: final rows with `since_ms <= window_start_ms < until_ms`."""

    since_ms: int
    until_ms: int


def rolling_window(newest_start_ms: int, candle_seconds: int, window_s: float) -> Window:
    """The `window_s` of history that ends with the newest final candle (its start given)."""
    until_ms = newest_start_ms + candle_seconds * 1000
    return Window(until_ms - int(window_s * 1000), until_ms)


@dataclass(frozen=True)
class Slot:
    """When a model is next due and why."""

    due_ms: int
    trigger: str  # "schedule" or "demotion"


def next_slot(
    *,
    last_started_ms: int | None,
    every_s: float,
    demoted_at_ms: int | None,
    after_demotion_s: float,
    now_ms: int,
) -> Slot:
    """The next run of one model.

    Every `every_s` after the last run began (a failed run also uses its slot, so a failing
    model is retried at the next one, not in a loop); a model that has never been trained is
    due now; a champion that was demoted after the last run makes the model due
    `after_demotion_s` after the demotion, if that is sooner.
    """
    if last_started_ms is None:
        slot = Slot(now_ms, "schedule")
    else:
        slot = Slot(last_started_ms + int(every_s * 1000), "schedule")
    if demoted_at_ms is not None and (last_started_ms is None or demoted_at_ms > last_started_ms):
        soon = demoted_at_ms + int(after_demotion_s * 1000)
        if soon < slot.due_ms:
            slot = Slot(soon, "demotion")
    return slot
