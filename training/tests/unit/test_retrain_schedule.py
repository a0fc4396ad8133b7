"""The retraining schedule's pure functions: durations, cron expressions, slots and windows."""

import pytest

from cryptopred_training.retrain.schedule import (
    Slot,
    Window,
    cron_schedule,
    format_duration,
    next_slot,
    parse_duration_s,
    parse_every_s,
    rolling_window,
)

HOUR_MS = 3_600_000
NOW_MS = 1_700_000_000_000


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("30m", 1800.0),
        ("6h", 21_600.0),
        ("7d", 604_800.0),
        ("1.5h", 5400.0),
        ("45", 45.0),
        ("2.5", 2.5),
        (" 6H ", 21_600.0),
        ("36 h", 129_600.0),
    ],
)
def test_parse_duration_s_reads_units_and_plain_seconds(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "six hours", "6hours", "6w", "-5m", "h", "1h30m", ".5h"])
def test_parse_duration_s_names_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration") as caught:
        parse_duration_s(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize("text", ["0", "0s", "0h", "0.0d"])
def test_parse_duration_s_refuses_zero(text: str) -> None:
    with pytest.raises(ValueError, match="must be longer than zero") as caught:
        parse_duration_s(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    "text", ["off", "OFF", " off ", "0", "0s", "0h", "", "  ", "none", "never"]
)
def test_parse_every_s_off_is_none(text: str) -> None:
    assert parse_every_s(text) is None


def test_parse_every_s_reads_durations_and_refuses_bad_text() -> None:
    assert parse_every_s("6h") == 21_600.0
    assert parse_every_s("15m") == 900.0
    with pytest.raises(ValueError, match="'sometimes' is not a duration"):
        parse_every_s("sometimes")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (21_600, "6h"),
        (90, "90s"),
        (60, "1m"),
        (900, "15m"),
        (3600, "1h"),
        (5400, "90m"),
        (86_400, "1d"),
        (604_800, "7d"),
        (129_600, "36h"),
        (2.5, "2.5s"),
        (1_000_001, "1000001s"),
        (45.0, "45s"),
        (21_600.0, "6h"),
    ],
)
def test_format_duration_uses_the_largest_whole_unit(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["90s", "15m", "6h", "7d", "36h"])
def test_format_duration_round_trips_parse_duration_s(text: str) -> None:
    assert format_duration(parse_duration_s(text)) == text


@pytest.mark.parametrize(
    ("every", "cron"),
    [
        ("1m", "* * * * *"),
        ("15m", "*/15 * * * *"),
        ("30m", "*/30 * * * *"),
        ("1h", "0 * * * *"),
        ("60m", "0 * * * *"),
        ("6h", "0 */6 * * *"),
        ("12h", "0 */12 * * *"),
        ("24h", "0 0 * * *"),
        ("1d", "0 0 * * *"),
    ],
)
def test_cron_schedule_of_intervals_on_the_clock_grid(every: str, cron: str) -> None:
    assert cron_schedule(parse_duration_s(every)) == cron


@pytest.mark.parametrize(
    ("every", "message"),
    [
        ("7m", "7m does not divide an hour or a day"),
        ("45m", "45m does not divide an hour or a day"),
        ("5h", "5h does not divide an hour or a day"),
        ("36h", "36h does not divide an hour or a day"),
        ("2d", "2d does not divide an hour or a day"),
        ("90s", "90s is not whole minutes"),
        ("30s", "30s is not whole minutes"),
    ],
)
def test_cron_schedule_refuses_intervals_off_the_grid(every: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cron_schedule(parse_duration_s(every))


def test_rolling_window_ends_one_candle_after_the_newest_start() -> None:
    newest = NOW_MS - 60_000
    window = rolling_window(newest, 60, 7 * 86_400)
    assert window == Window(since_ms=newest + 60_000 - 604_800_000, until_ms=newest + 60_000)
    assert window.until_ms - window.since_ms == 604_800_000


def test_rolling_window_of_wider_candles_and_fractional_seconds() -> None:
    assert rolling_window(1_000_000, 300, 3600.5) == Window(1_300_000 - 3_600_500, 1_300_000)


def _slot(
    *,
    last_started_ms: int | None = None,
    demoted_at_ms: int | None = None,
    after_demotion_s: float = 300,
) -> Slot:
    """Every 6 h, retried 5 min after a demotion, seen at NOW_MS."""
    return next_slot(
        last_started_ms=last_started_ms,
        every_s=6 * 3600,
        demoted_at_ms=demoted_at_ms,
        after_demotion_s=after_demotion_s,
        now_ms=NOW_MS,
    )


def test_a_model_never_trained_is_due_now() -> None:
    assert _slot() == Slot(NOW_MS, "schedule")


def test_the_next_slot_is_every_after_the_last_run() -> None:
    last = NOW_MS - HOUR_MS
    assert _slot(last_started_ms=last) == Slot(last + 6 * HOUR_MS, "schedule")
    # A slot in the past (the scheduler was down) is still that slot: due at once.
    old = NOW_MS - 10 * HOUR_MS
    assert _slot(last_started_ms=old) == Slot(old + 6 * HOUR_MS, "schedule")


def test_a_demotion_after_the_last_run_makes_it_due_sooner() -> None:
    last = NOW_MS - HOUR_MS
    demoted = NOW_MS - 60_000
    slot = _slot(last_started_ms=last, demoted_at_ms=demoted)
    assert slot == Slot(demoted + 300_000, "demotion")


def test_a_demotion_whose_retry_comes_after_the_slot_keeps_the_slot() -> None:
    last = NOW_MS - 6 * HOUR_MS + 60_000  # slot in one minute
    slot = _slot(last_started_ms=last, demoted_at_ms=NOW_MS - 1000)  # demotion retry in ~5 min
    assert slot == Slot(last + 6 * HOUR_MS, "schedule")


def test_a_demotion_before_the_last_run_is_ignored() -> None:
    last = NOW_MS - HOUR_MS
    for demoted in (last - 1, last):
        slot = _slot(last_started_ms=last, demoted_at_ms=demoted)
        assert slot == Slot(last + 6 * HOUR_MS, "schedule")


def test_a_never_trained_model_stays_due_now_after_a_recent_demotion() -> None:
    assert _slot(demoted_at_ms=NOW_MS - 1000) == Slot(NOW_MS, "schedule")


def test_after_demotion_zero_retrains_at_the_demotion() -> None:
    last = NOW_MS - HOUR_MS
    demoted = NOW_MS - 5000
    slot = _slot(last_started_ms=last, demoted_at_ms=demoted, after_demotion_s=0)
    assert slot == Slot(demoted, "demotion")
