"""`cryptopred up | status | down` on real processes: tansu, PostgreSQL, MLflow and Ray."""

import json
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

import psutil
import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from cryptopred.stack.parts import Postgres
from cryptopred_core.ports import free_port, port_in_use
from cryptopred_core.raycluster import serve_run_dir
from cryptopred_core.settings import Settings
from cryptopred_testsupport.haproxy import start_haproxy

from .embedded_stack import CLI, run, stack_environ

pytestmark = pytest.mark.integration


@pytest.fixture
def stack_env(tmp_path):
    env, ports = stack_environ(tmp_path / "data")
    yield env, ports
    subprocess.run([*CLI, "down"], env=env, cwd=tmp_path, capture_output=True, timeout=120)


def http_status(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status


def process_alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def records(env):
    return sorted(p.name for p in (Path(env["CRYPTOPRED_DATA_DIR"]) / "run").glob("*.json"))


def test_up_status_down_lifecycle(stack_env):
    env, ports = stack_env
    up = run(env, "up")
    assert up.returncode == 0, up.stderr
    status = run(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    parts = {p["name"]: p for p in json.loads(status.stdout)}
    assert set(parts) == {"broker", "postgres", "mlflow", "ray"}
    assert all(p["healthy"] and p["mode"] == "embedded" for p in parts.values())
    assert parts["broker"]["address"] == f"127.0.0.1:{ports['BROKER_PORT']}"
    assert parts["postgres"]["address"].startswith("postgresql://")
    assert parts["mlflow"]["address"] == f"http://127.0.0.1:{ports['MLFLOW_PORT']}"
    assert parts["ray"]["address"] == f"http://127.0.0.1:{ports['RAY_DASHBOARD_PORT']}"

    # the UIs answer HTTP, the address printed for PostgreSQL connects, topics and schema exist
    assert http_status(parts["mlflow"]["address"] + "/") == 200
    assert http_status(parts["ray"]["address"] + "/") == 200
    with psycopg.connect(parts["postgres"]["address"]) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    assert {"candles", "technical_indicators", "predictions", "prediction_outcomes"} <= tables
    meta = AdminClient({"bootstrap.servers": parts["broker"]["address"]}).list_topics(timeout=10)
    for topic in ("trades", "candles", "technical_indicators", "predictions", "dlq"):
        assert len(meta.topics[topic].partitions) == 3

    # up twice is harmless: same processes, still healthy
    before = {
        n: json.loads((Path(env["CRYPTOPRED_DATA_DIR"]) / "run" / n).read_text())["pid"]
        for n in records(env)
    }
    again = run(env, "up")
    assert again.returncode == 0, again.stderr
    after = {
        n: json.loads((Path(env["CRYPTOPRED_DATA_DIR"]) / "run" / n).read_text())["pid"]
        for n in records(env)
    }
    assert before == after and len(after) == 4

    run_dir = serve_run_dir(str(ports["RAY_PORT"]), make=False)  # HAProxy's, made at start
    assert run_dir.is_dir()
    # Serve's HAProxy outlives the Ray that started it: down ends it (found by its run dir)
    haproxy, haproxy_port = start_haproxy(run_dir)
    threading.Thread(target=haproxy.wait, daemon=True).start()  # reap it once ended
    try:
        down = run(env, "down")
        assert down.returncode == 0, down.stderr
        assert not run_dir.exists()
        assert haproxy.wait(timeout=10) is not None
        assert not port_in_use("127.0.0.1", haproxy_port)
    finally:
        haproxy.kill()  # a no-op once it has ended
    for name in ("broker", "postgres", "mlflow", "ray"):
        assert f"stopped {name}" in down.stdout
    for pid in after.values():
        assert not process_alive(pid), pid
    for port in ports.values():
        assert not port_in_use("127.0.0.1", port), port
    assert records(env) == []
    status = run(env, "status")
    assert status.returncode == 1
    assert (Path(env["CRYPTOPRED_DATA_DIR"]) / "postgres" / "PG_VERSION").exists()


def test_a_taken_port_is_one_line_and_starts_nothing(stack_env):
    env, ports = stack_env
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["MLFLOW_PORT"]))
        squatter.listen()
        up = run(env, "up")
    assert up.returncode == 1
    lines = [ln for ln in up.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: mlflow: port {ports['MLFLOW_PORT']} on 127.0.0.1 is already in use"]
    assert records(env) == []
    assert not port_in_use("127.0.0.1", ports["BROKER_PORT"])


def test_a_part_failing_to_start_rolls_back_the_others(stack_env, tmp_path):
    env, ports = stack_env
    fake = tmp_path / "tansu-broken"
    fake.write_text("#!/bin/sh\necho 'tansu: cannot open storage' >&2\nsleep 1\nexit 3\n")
    fake.chmod(0o755)
    env = {**env, "CRYPTOPRED_TANSU_BIN": str(fake)}
    up = run(env, "up")
    assert up.returncode == 1
    lines = [ln for ln in up.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: broker: exited during start")
    assert "cannot open storage" in lines[0]
    assert records(env) == []
    for port in ports.values():
        assert not port_in_use("127.0.0.1", port), port


def test_postgres_data_survives_a_restart(tmp_path):
    settings = Settings(data_dir=tmp_path, postgres_port=free_port())
    part = Postgres(settings)
    part.start()
    try:
        with psycopg.connect(part.address, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (42)")
    finally:
        assert part.stop()
    assert not part.healthy()
    part.start()
    try:
        with psycopg.connect(part.address) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(42,)]
    finally:
        part.stop()
