"""The one retry policy for a stage's I/O: what is retryable, for how long, and DB time limits.

Retryable: a DB that cannot be reached or stops answering (`psycopg.OperationalError`,
`psycopg.InterfaceError`, and `DbTimeoutError`, a call cut after `db_timeout_s`), retried with
exponential backoff for at most `db_retry_max_s`; a retriable broker error of an offset commit,
for at most `broker_retry_max_s`. Anything else (a renamed table, a value out of range, a
programming error) is raised at once: the stage fails and its actor restarts.

A paused (SIGSTOPped) server keeps its TCP connections open and the kernel acknowledges what
is sent, so a query on an open connection would wait forever: every DB call runs under a
timer that shuts the connection's socket down after `db_timeout_s`, which ends the wait with
an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import psycopg
import tenacity
from confluent_kafka import KafkaException

from cryptopred_core.db import connect
from cryptopred_core.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: first wait between two DB attempts; each later wait doubles, up to DB_BACKOFF_CAP_S
DB_BACKOFF_INITIAL_S = 0.5
DB_BACKOFF_CAP_S = 10.0


class DbTimeoutError(psycopg.OperationalError):
    """A DB call did not answer within its time limit; its connection was cut."""


RETRYABLE_DB_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


class StoppedError(Exception):
    """The stage was asked to stop while retrying; the call did not complete."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _log_retry(what: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait_s = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "%s failed (%s); retry %d in %.1f s",
            what,
            first_line(exc) if exc else "?",
            state.attempt_number,
            wait_s,
        )

    return before_sleep


def db_retrying(
    what: str,
    max_s: float,
    *,
    stop: threading.Event | None = None,
    initial_s: float = DB_BACKOFF_INITIAL_S,
    cap_s: float = DB_BACKOFF_CAP_S,
    sleep: Callable[[float], None] = time.sleep,
) -> tenacity.Retrying:
    """Retry `what` on RETRYABLE_DB_ERRORS with exponential backoff for at most `max_s`
    (or until `stop` is set); the last error is raised when it gives up."""
    event = stop or threading.Event()
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(RETRYABLE_DB_ERRORS),
        wait=tenacity.wait_exponential(multiplier=initial_s, max=cap_s),
        stop=tenacity.stop_any(tenacity.stop_after_delay(max_s), _StopWhenSet(event)),
        sleep=sleep,
        before_sleep=_log_retry(what),
        reraise=True,
    )


class _StopWhenSet(tenacity.stop.stop_base):
    """Stop retrying once `event` is set (the stage is stopping)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.event.is_set()


def _retriable_kafka(exc: BaseException) -> bool:
    if not isinstance(exc, KafkaException) or not exc.args:
        return False
    error = exc.args[0]
    return bool(getattr(error, "retriable", lambda: False)())


def broker_retrying(what: str, max_s: float) -> tenacity.Retrying:
    """Retry `what` on a broker error librdkafka marks retriable, for at most `max_s`."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(_retriable_kafka),
        wait=tenacity.wait_exponential(multiplier=0.2, max=5.0),
        stop=tenacity.stop_after_delay(max_s),
        before_sleep=_log_retry(what),
        reraise=True,
    )


def _cut(conn: psycopg.Connection) -> None:
    """Shut the connection's socket down: a call blocked on it returns with an error."""
    with contextlib.suppress(OSError, psycopg.Error):
        fd = conn.pgconn.socket
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


@contextlib.contextmanager
def time_limit(conn: psycopg.Connection, timeout_s: float) -> Iterator[None]:
    """Bound the DB calls made on `conn` inside the block to `timeout_s` in all: past it the
    connection is cut and the block raises DbTimeoutError (the connection is then unusable)."""
    fired = threading.Event()
    # held while cutting and while the block ends: once it has ended, the socket is never cut
    # (its descriptor could by then belong to another connection)
    lock = threading.Lock()
    ended = False

    def cut() -> None:
        with lock:
            if not ended:
                fired.set()
                _cut(conn)

    timer = threading.Timer(timeout_s, cut)
    timer.daemon = True
    timer.start()
    try:
        yield
    except psycopg.Error as exc:
        if fired.is_set():
            raise DbTimeoutError(f"no answer from the DB within {timeout_s:g} s") from exc
        raise
    finally:
        with lock:
            ended = True
        timer.cancel()


class DbCalls:
    """A stage's DB access: one kept connection, each call bounded by `timeout_s` and retried
    by the policy for at most `retry_max_s`. Not thread-safe (one per stage thread).

    Use `run(what, fn)`; `fn(conn)` must be safe to repeat (it runs again after a retryable
    failure, on a new connection) and should commit what it writes.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        retry_max_s: float = 60.0,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff_initial_s: float = DB_BACKOFF_INITIAL_S,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retry_max_s = retry_max_s
        self.stop = stop or threading.Event()
        self.sleep = sleep
        self.backoff_initial_s = backoff_initial_s
        self.retries = 0
        self._conn: psycopg.Connection | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, url: str | None = None, stop: threading.Event | None = None
    ) -> DbCalls:
        """Time limit and retry bound from `db_timeout_s` and `db_retry_max_s`."""
        return cls(
            url or settings.db_url,
            timeout_s=settings.db_timeout_s,
            retry_max_s=settings.db_retry_max_s,
            stop=stop,
        )

    def run(self, what: str, fn: Callable[[psycopg.Connection], T]) -> T:
        """`fn(conn)` under the time limit, retried on retryable errors. Raises StoppedError
        when the stage stops while the DB is unreachable, the last error when the retries run
        out, and any other error at once."""
        retrying = db_retrying(
            what,
            self.retry_max_s,
            stop=self.stop,
            initial_s=self.backoff_initial_s,
            sleep=self.sleep,
        )
        try:
            result: T = retrying(self._attempt, fn)
            return result
        except RETRYABLE_DB_ERRORS as exc:
            if self.stop.is_set():
                raise StoppedError(f"{what}: stopped while the DB was unreachable") from exc
            raise

    def read(self, what: str, fn: Callable[[psycopg.Connection], T]) -> T:
        """`run` for a read-only `fn`: its transaction ends after it (no lock or snapshot is
        held until the next call)."""

        def read_and_end(conn: psycopg.Connection) -> T:
            try:
                return fn(conn)
            finally:
                conn.rollback()

        return self.run(what, read_and_end)

    def _attempt(self, fn: Callable[[psycopg.Connection], T]) -> T:
        try:
            conn = self._connection()
            with time_limit(conn, self.timeout_s):
                return fn(conn)
        except RETRYABLE_DB_ERRORS:
            self.retries += 1
            self.close()
            raise
        except BaseException:
            self._rollback()
            raise

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url, timeout_s=self.timeout_s)
        return self._conn

    def _rollback(self) -> None:
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.rollback()
            except psycopg.Error:
                self.close()

    def close(self) -> None:
        """Close the kept connection (the next call opens a new one)."""
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None
