import random
import threading

import pytest

from cryptopred_ingest.reconnect import Backoff, SilenceError, Watchdog, run_with_reconnect


def test_backoff_doubles_to_cap_within_jitter():
    backoff = Backoff(initial_s=1.0, max_s=10.0, jitter=0.2, rng=random.Random(1))
    delays = [backoff.next_delay_s() for _ in range(8)]
    for n, delay in enumerate(delays):
        base = min(10.0, 2.0**n)
        assert base * 0.8 <= delay <= min(10.0, base * 1.2)
    assert delays[-1] <= 10.0 and backoff.attempt == 8


def test_backoff_jitter_spreads_and_reset_restarts():
    backoff = Backoff(initial_s=1.0, max_s=60.0, jitter=0.5, rng=random.Random(2))
    firsts = set()
    for _ in range(20):
        firsts.add(round(backoff.next_delay_s(), 6))
        backoff.reset()
    assert len(firsts) > 10 and all(0.5 <= d <= 1.5 for d in firsts)


def test_watchdog_trips_after_silence():
    now = [100.0]
    dog = Watchdog(5.0, clock=lambda: now[0])
    now[0] = 104.9
    dog.check()
    dog.feed()
    now[0] = 109.0
    dog.check()
    now[0] = 110.5
    with pytest.raises(SilenceError, match=r"no message for 5\.6 s"):
        dog.check()


def test_run_with_reconnect_retries_with_backoff_then_stops(caplog):
    stop = threading.Event()
    calls = []
    reconnects = []

    def session():
        calls.append(1)
        if len(calls) == 4:
            stop.set()
            return
        raise ConnectionRefusedError("refused")

    backoff = Backoff(initial_s=0.001, max_s=0.004, jitter=0.0)
    run_with_reconnect(session, backoff, stop, "test", lambda: reconnects.append(1))
    assert len(calls) == 4 and len(reconnects) == 3
    lines = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(lines) == 3 and "ConnectionRefusedError: refused" in lines[0]


def test_run_with_reconnect_waits_not_busy_loops():
    stop = threading.Event()
    calls = []

    def session():
        calls.append(1)
        raise OSError("down")

    backoff = Backoff(initial_s=0.05, max_s=0.05, jitter=0.0)
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    run_with_reconnect(session, backoff, stop, "test")
    timer.join()
    assert 3 <= len(calls) <= 8
