"""Bounded backoff, and only network errors reconnect."""

import logging
import random
import threading

import pytest
import websocket

from cryptopred_ingest.publish import DeliveryError
from cryptopred_ingest.reconnect import Backoff, SilenceError, run_with_reconnect


def test_backoff_survives_thousands_of_failures_at_the_cap():
    backoff = Backoff(initial_s=1.0, max_s=60.0, jitter=0.2, rng=random.Random(3))
    delays = [backoff.next_delay_s() for _ in range(5000)]
    assert backoff.attempt == 5000
    assert all(48.0 <= d <= 60.0 for d in delays[-100:])


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError("reset"),
        TimeoutError("slow"),
        OSError("unreachable"),
        websocket.WebSocketBadStatusException("503", 503),
        SilenceError("quiet"),
    ],
)
def test_network_errors_reconnect(error):
    stop = threading.Event()
    calls = []

    def session():
        calls.append(1)
        if len(calls) == 3:
            stop.set()
            return
        raise error

    run_with_reconnect(session, Backoff(0.001, 0.002), stop, "t")
    assert len(calls) == 3


@pytest.mark.parametrize(
    "error", [KeyError("bug"), AttributeError("bug"), DeliveryError(3, "expired")]
)
def test_other_errors_propagate_after_logging(error, caplog):
    calls = []

    def session():
        calls.append(1)
        raise error

    with caplog.at_level(logging.ERROR), pytest.raises(type(error)):
        run_with_reconnect(session, Backoff(0.001, 0.002), threading.Event(), "t")
    assert len(calls) == 1
    assert any("not a network error" in r.getMessage() for r in caplog.records)


def test_extra_retryable_errors_reconnect():
    class BusyError(Exception):
        pass

    stop = threading.Event()
    calls = []

    def session():
        calls.append(1)
        if len(calls) == 2:
            stop.set()
        raise BusyError

    run_with_reconnect(session, Backoff(0.001, 0.002), stop, "t", retry_on=(BusyError,))
    assert len(calls) == 2
