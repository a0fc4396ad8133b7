"""The stage retry policy: what is retried, for how long, and the DB time limit."""

import socket
import threading
import time

import psycopg
import pytest

from cryptopred_core import retry
from cryptopred_core.pipeline.writer import DbWriter, WriterStoppedError
from cryptopred_core.retry import DbCalls, DbTimeoutError, StoppedError, time_limit


class FakePgConn:
    def __init__(self, fd: int = -1) -> None:
        self.closed = False
        self.rollbacks = 0
        self.commits = 0
        self.pgconn = type("PgConn", (), {"socket": fd})()

    def close(self) -> None:
        self.closed = True

    def rollback(self) -> None:
        self.rollbacks += 1

    def commit(self) -> None:
        self.commits += 1


@pytest.fixture
def conns(monkeypatch):
    opened: list[FakePgConn] = []

    def fake_connect(url, *, autocommit=False, timeout_s=10):
        opened.append(FakePgConn())
        return opened[-1]

    monkeypatch.setattr(retry, "connect", fake_connect)
    return opened


def calls(**kwargs) -> DbCalls:
    return DbCalls("postgresql://x/y", backoff_initial_s=0.01, sleep=lambda _s: None, **kwargs)


def test_an_unreachable_db_is_retried_on_a_new_connection_until_it_answers(conns):
    attempts = []

    def query(conn):
        attempts.append(conn)
        if len(attempts) < 3:
            raise psycopg.OperationalError("connection refused")
        return 42

    db = calls(retry_max_s=30)
    assert db.run("read", query) == 42
    assert db.retries == 2
    assert len(conns) == 3 and conns[0].closed and conns[1].closed and not conns[2].closed


def test_a_non_operational_error_is_raised_at_once(conns):
    attempts = []

    def query(conn):
        attempts.append(conn)
        raise psycopg.errors.UndefinedTable('relation "candles" does not exist')

    with pytest.raises(psycopg.errors.UndefinedTable):
        calls(retry_max_s=30).run("read", query)
    assert len(attempts) == 1
    assert conns[0].rollbacks == 1  # the aborted transaction does not poison the next call


def test_retries_stop_after_retry_max_s_with_the_last_error(conns):
    db = DbCalls("postgresql://x/y", retry_max_s=0.3, backoff_initial_s=0.05)

    def query(conn):
        raise psycopg.OperationalError("still down")

    start_s = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="still down"):
        db.run("read", query)
    assert time.monotonic() - start_s < 2
    assert db.retries >= 2


def test_a_stop_while_retrying_raises_stopped(conns):
    stop = threading.Event()

    def query(conn):
        stop.set()
        raise psycopg.OperationalError("down")

    with pytest.raises(StoppedError):
        calls(retry_max_s=30, stop=stop).run("read", query)


def test_time_limit_unblocks_a_call_waiting_on_a_silent_server():
    ours, server = socket.socketpair()  # the server never answers (like a SIGSTOPped one)
    try:
        conn = FakePgConn(ours.fileno())

        def blocked_query() -> None:
            if ours.recv(1) == b"":  # what libpq sees once the socket is shut down
                raise psycopg.OperationalError("server closed the connection unexpectedly")

        start_s = time.monotonic()
        with pytest.raises(DbTimeoutError), time_limit(conn, 0.2):  # type: ignore[arg-type]
            blocked_query()
        assert time.monotonic() - start_s < 2
    finally:
        ours.close()
        server.close()


def test_a_timed_out_call_is_retryable():
    assert issubclass(DbTimeoutError, retry.RETRYABLE_DB_ERRORS)


def run_bounded(fn, timeout_s: float):
    """Run fn in a thread; (finished, its exception)."""
    box: list[BaseException | None] = []

    def target() -> None:
        try:
            fn()
            box.append(None)
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return (bool(box), box[0] if box else None)


def test_db_writer_gives_up_after_retry_max_s_so_the_stage_fails(unused_port_url):
    writer = DbWriter(unused_port_url, "postgres", retry_initial_s=0.05, retry_max_s=0.5)
    rows = {"candles": [object()]}
    finished, error = run_bounded(lambda: writer.write(rows), timeout_s=15)  # type: ignore[arg-type]
    assert finished, "the writer kept retrying past retry_max_s"
    assert isinstance(error, psycopg.OperationalError)


def test_db_writer_stopped_while_the_db_is_down(unused_port_url):
    stop = threading.Event()
    stop.set()
    writer = DbWriter(unused_port_url, "postgres", retry_max_s=60, stop=stop)
    with pytest.raises(WriterStoppedError):
        writer.write({"candles": [object()]})  # type: ignore[list-item]


@pytest.fixture
def unused_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/none"
