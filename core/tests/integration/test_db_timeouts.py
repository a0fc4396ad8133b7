"""Stage DB calls against a paused (SIGSTOPped) PostgreSQL: the kernel still accepts and
acknowledges, so only the time limit of `cryptopred_core.retry` unblocks a call."""

import contextlib
import os
import signal
import threading
import time

import psutil
import psycopg
import pytest

from cryptopred_core.db import fetch_all
from cryptopred_core.retry import DbCalls

pytestmark = pytest.mark.integration


def select_one(conn: psycopg.Connection) -> int:
    return int(fetch_all(conn, "SELECT 1 AS one")[0]["one"])


def paused(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)


def resumed(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # a cut backend may have ended
            os.kill(pid, signal.SIGCONT)


def server_pids(db: DbCalls) -> list[int]:
    """The backend serving db's connection and the postmaster (its parent)."""
    assert db._conn is not None
    backend = db._conn.info.backend_pid
    return [backend, psutil.Process(backend).ppid()]


def test_a_call_on_a_paused_db_times_out_and_is_retried_until_it_resumes(postgres):
    db = DbCalls(postgres.db_url, timeout_s=1.0, retry_max_s=60, backoff_initial_s=0.2)
    assert db.run("probe", select_one) == 1
    pids = server_pids(db)
    paused(pids)
    resume = threading.Timer(4.0, resumed, args=(pids,))
    try:
        resume.start()
        start_s = time.monotonic()
        assert db.run("probe", select_one) == 1  # cut after 1 s, retried, answered once resumed
        assert 3.5 < time.monotonic() - start_s < 30
        assert db.retries >= 1
    finally:
        resume.cancel()
        resumed(pids)
        db.close()


def test_a_db_paused_longer_than_the_retry_bound_fails_the_call_in_bounded_time(postgres):
    db = DbCalls(postgres.db_url, timeout_s=1.0, retry_max_s=3.0, backoff_initial_s=0.2)
    assert db.run("probe", select_one) == 1
    pids = server_pids(db)
    paused(pids)
    try:
        start_s = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            db.run("probe", select_one)
        assert time.monotonic() - start_s < 15
    finally:
        resumed(pids)
        db.close()
