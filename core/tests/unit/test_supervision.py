"""Supervision: a failure records its error and ends the process; restarts back off."""

import threading

import pytest

from cryptopred_core.supervision import CrashRecord, Supervisor, crash_backoff_s, read_record


class ExitedError(Exception):
    pass


def exit_process(code: int) -> None:
    raise ExitedError(code)


def supervisor(store, restarted, clock=lambda: 1000.0, **kwargs) -> Supervisor:
    return Supervisor(
        "ns/stream-candles-0",
        store,
        restarted=restarted,
        exit_process=exit_process,
        clock_s=clock,
        **kwargs,
    )


class DictStore(dict):
    def put(self, key, value):
        self[key] = value


def test_backoff_doubles_from_one_second_and_is_capped():
    assert [crash_backoff_s(k) for k in range(8)] == [0, 1, 2, 4, 8, 16, 30, 30]
    assert crash_backoff_s(10_000, max_s=30) == 30  # no overflow after many failures


def test_a_failure_records_the_error_and_ends_the_process():
    store = DictStore()
    sup = supervisor(store, restarted=False)
    with pytest.raises(ExitedError) as exited:
        sup.fail("stage candles", ValueError("boom"))
    assert exited.value.args == (1,)
    record = read_record(store, "ns/stream-candles-0")
    assert record.last_error == "ValueError: boom"
    assert record.last_error_ms == 1_000_000
    assert record.consecutive_failures == 1
    assert record.restarts == 0


def test_a_restarted_actor_counts_the_restart_and_backs_off_per_consecutive_failure():
    store = DictStore()
    for expected_wait_s in (0, 1, 2):  # the first restart follows a kill, not a failure
        sup = supervisor(store, restarted=True)
        assert sup.backoff_s() == expected_wait_s
        with pytest.raises(ExitedError):
            sup.fail("x", RuntimeError("again"))
    sup = supervisor(store, restarted=True)
    assert sup.record.restarts == 4
    assert sup.backoff_s() == 4  # three failures in a row
    assert sup.record.last_error == "RuntimeError: again"


def test_a_first_start_resets_the_record_and_does_not_wait():
    store = DictStore()
    store.put("ns/stream-candles-0", CrashRecord(5, 3, "old", 1).encode())
    sup = supervisor(store, restarted=False)
    assert sup.backoff_s() == 0
    assert read_record(store, "ns/stream-candles-0") == CrashRecord()


def test_a_long_enough_run_resets_consecutive_failures():
    store = DictStore()
    store.put("ns/stream-candles-0", CrashRecord(2, 2, "old", 1).encode())
    now = [1000.0]
    sup = supervisor(store, restarted=True, clock=lambda: now[0], healthy_after_s=60)
    assert sup.backoff_s() == 2
    sup.note_healthy()
    assert read_record(store, "ns/stream-candles-0").consecutive_failures == 2
    now[0] += 61
    sup.note_healthy()
    record = read_record(store, "ns/stream-candles-0")
    assert record.consecutive_failures == 0 and record.restarts == 3


def test_wait_backoff_returns_early_when_stopped():
    store = DictStore()
    store.put("k", CrashRecord(1, 5, "x", 1).encode())
    sup = Supervisor("k", store, restarted=True, exit_process=exit_process)
    stop = threading.Event()
    stop.set()
    assert sup.wait_backoff(stop) is False


def test_an_unreadable_record_is_an_empty_one():
    store = DictStore()
    store.put("k", b"not json")
    assert read_record(store, "k") == CrashRecord()
