"""Whether a stage's saved resume point still fits its topic (pure logic, no broker)."""

from cryptopred_core.pipeline.resume import CLOCK_SKEW_MS, ResumePoint, stale_reason

SAVED_MS = 1_795_729_684_547
POINT = ResumePoint(offset=546_488, saved_ms=SAVED_MS)


def test_a_point_whose_previous_record_came_before_it_is_used() -> None:
    assert stale_reason(POINT, found=True, previous_ts_ms=SAVED_MS - 1) is None
    assert stale_reason(POINT, found=True, previous_ts_ms=SAVED_MS - 60_000) is None
    assert stale_reason(POINT, found=True, previous_ts_ms=None) is None  # no timestamp: use it


def test_a_topic_that_ends_before_the_point_was_recreated() -> None:
    reason = stale_reason(POINT, found=False, previous_ts_ms=None)
    assert reason is not None and "546487" in reason and "recreated" in reason


def test_a_record_newer_than_the_point_means_the_topic_was_recreated() -> None:
    later = SAVED_MS + CLOCK_SKEW_MS + 1
    reason = stale_reason(POINT, found=True, previous_ts_ms=later)
    assert reason is not None and str(later) in reason and str(SAVED_MS) in reason


def test_clocks_a_little_apart_do_not_make_a_point_stale() -> None:
    assert stale_reason(POINT, found=True, previous_ts_ms=SAVED_MS + CLOCK_SKEW_MS) is None


def test_a_point_at_the_start_always_fits() -> None:
    assert stale_reason(ResumePoint(0, SAVED_MS), found=False, previous_ts_ms=None) is None
