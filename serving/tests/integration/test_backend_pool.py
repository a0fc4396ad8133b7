"""The API's pooled DB access against a real PostgreSQL: shared connections, a bounded pool,
recovery from connections the server cut, and a 503 when the DB cannot be reached."""

from __future__ import annotations

import threading

import psycopg
import pytest

from cryptopred_core.db import connect
from cryptopred_core.ports import free_port
from cryptopred_core.settings import Settings
from cryptopred_serving.backend import APPLICATION_NAME, ClientError, Db

pytestmark = pytest.mark.integration


def backend_pid(conn: psycopg.Connection, sleep_s: float = 0.0) -> int:
    row = conn.execute("SELECT pg_backend_pid(), pg_sleep(%s)", (sleep_s,)).fetchone()
    assert row is not None
    return int(row[0])


def test_route_threads_share_at_most_max_size_connections(postgres: Settings) -> None:
    db = Db(postgres.db_url, max_size=3)
    pids: list[int] = []
    lock = threading.Lock()

    def request() -> None:
        pid = db.run(backend_pid, 0.05)  # overlapping requests, as from the route threadpool
        with lock:
            pids.append(pid)

    threads = [threading.Thread(target=request) for _ in range(12)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(pids) == 12
        assert 1 <= len(set(pids)) <= 3
        assert db.run(backend_pid) in set(pids)  # kept between requests
    finally:
        db.close()


def test_connections_the_server_cut_are_replaced_and_the_request_answers(
    postgres: Settings,
) -> None:
    db = Db(postgres.db_url, max_size=2)
    try:
        before = db.run(backend_pid)
        with connect(postgres.db_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (APPLICATION_NAME,),
            )
        after = db.run(backend_pid)
        assert after != before
    finally:
        db.close()


def test_an_unreachable_db_is_a_503() -> None:
    db = Db(f"postgresql://nobody@127.0.0.1:{free_port()}/none", timeout_s=1.0)
    try:
        with pytest.raises(ClientError) as info:
            db.run(backend_pid)
        assert info.value.status == 503
        assert info.value.message.startswith("database unavailable")
    finally:
        db.close()
