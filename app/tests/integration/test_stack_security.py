"""A running embedded stack, probed as a neighbour on the network would: what listens where,
what answers without credentials, and Ray's documented commands with the stack's token."""

import ipaddress
import json
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import psycopg
import pytest

from cryptopred_core.ports import free_port
from cryptopred_core.raycluster import serve_run_dir

from .embedded_stack import CLI, run, stack_environ

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One stack for the module, with the Serve application (HAProxy ingress) deployed on it."""
    folder = tmp_path_factory.mktemp("secure-stack")
    env, ports = stack_environ(folder / "data", CRYPTOPRED_RAY_NUM_CPUS="2")
    try:
        up = run(env, "up", timeout=400)
        assert up.returncode == 0, up.stderr
        serve_port = free_port()
        env["CRYPTOPRED_SERVE_PORT"] = str(serve_port)
        env["CRYPTOPRED_PAIRS"] = "BTC/USD"
        deployed = run(env, "serve", "deploy", timeout=400)
        assert deployed.returncode == 0, deployed.stderr[-2000:]
        yield env, ports, {**env, **client_env(env)}, serve_port
    finally:
        subprocess.run([*CLI, "down"], env=env, cwd=folder, capture_output=True, timeout=120)


def client_env(env):
    """`eval "$(cryptopred env)"`, as a dict."""
    printed = run(env, "env")
    assert printed.returncode == 0, printed.stderr
    pairs = {}
    for line in printed.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        pairs[name] = shlex.split(value)[0]
    return pairs


def stack_processes(env, ports):
    """Every process of the stack: the recorded parts with their descendants, and Serve's
    HAProxy (found by its files under the head's run dir)."""
    procs = {}
    for record in (Path(env["CRYPTOPRED_DATA_DIR"]) / "run").glob("*.json"):
        root = psutil.Process(json.loads(record.read_text())["pid"])
        for proc in [root, *root.children(recursive=True)]:
            procs[proc.pid] = proc
    run_dir = f"{serve_run_dir(str(ports['RAY_PORT']), make=False)}/"
    for proc in psutil.process_iter(["cmdline"]):
        if any(arg.startswith(run_dir) for arg in proc.info["cmdline"] or []):
            procs[proc.pid] = proc
    return procs


def test_every_listener_of_a_running_stack_is_on_the_bind_host(stack):
    env, ports, _, serve_port = stack
    assert json.loads(http_text(f"http://127.0.0.1:{serve_port}/healthz"))  # Serve answers

    procs = stack_processes(env, ports)
    listeners = [
        (plain_ip(conn.laddr.ip), conn.laddr.port, procs[conn.pid].name())
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.pid in procs
    ]
    exposed = [item for item in listeners if not item[0].is_loopback]
    assert exposed == [], f"listening beyond 127.0.0.1: {exposed}"
    ports_seen = {port for _, port, _ in listeners}
    assert set(ports.values()) | {serve_port} <= ports_seen
    names = {name for _, _, name in listeners}
    assert {"postgres", "gcs_server", "raylet", "haproxy"} <= names, names
    # HAProxy's stats and metrics listeners too, besides the Serve port
    assert len([1 for _, port, name in listeners if name == "haproxy" and port != serve_port]) >= 2


def test_ray_refuses_clients_without_the_stacks_token(stack):
    env, _, client, _ = stack
    token_path = Path(client["RAY_AUTH_TOKEN_PATH"])
    assert token_path.is_relative_to(Path(env["CRYPTOPRED_DATA_DIR"]))
    assert token_path.stat().st_mode & 0o077 == 0
    anonymous = {k: v for k, v in client.items() if not k.startswith("RAY_AUTH")}
    listed = subprocess.run(
        [ray_tool("ray"), "job", "list"], env=anonymous, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode != 0
    assert "auth" in (listed.stdout + listed.stderr).lower()
    wrong = Path(env["CRYPTOPRED_DATA_DIR"]).parent / "wrong_token"
    wrong.write_text("0" * 64)
    listed = subprocess.run(
        [ray_tool("ray"), "job", "list"],
        env={**client, "RAY_AUTH_TOKEN_PATH": str(wrong)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode != 0


def test_postgres_asks_every_client_for_its_password(stack):
    env, ports, _, _ = stack
    host = f"127.0.0.1:{ports['POSTGRES_PORT']}"
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"postgresql://postgres@{host}/cryptopred", connect_timeout=5)
    secrets = Path(env["CRYPTOPRED_DATA_DIR"]) / "secrets"
    assert secrets.stat().st_mode & 0o077 == 0
    grafana = (secrets / "grafana_db_password").read_text().strip()
    with psycopg.connect(f"postgresql://cryptopred_grafana:{grafana}@{host}/cryptopred") as conn:
        assert conn.execute("SELECT count(*) FROM candles").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM candles")


def test_the_documented_ray_commands_work_as_written(stack):
    """The README's block for Ray's own tools, run line by line in one shell."""
    env, _, _, _ = stack
    lines = documented_ray_lines()
    assert lines[0].startswith('eval "$(uv run cryptopred env)"')
    assert any(line.startswith("ray job submit") for line in lines)
    assert any(line.startswith("serve status") for line in lines)
    venv_bin = Path(sys.executable).parent
    script = "set -e\n" + "\n".join(
        line.replace("uv run cryptopred", shlex.quote(str(venv_bin / "cryptopred")))
        for line in lines
    )
    done = subprocess.run(
        ["bash", "-c", script],
        env={**env, "PATH": f"{venv_bin}:{env['PATH']}"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=420,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "succeeded" in output.lower()  # the job ran to its end
    for stage in ("stream-candles-0", "stream-indicators-0", "stream-sink-0"):
        assert f"running {stage}" in output
    assert "cryptopred" in output  # serve status lists the application

    deadline = time.monotonic() + 120
    while True:  # the job's stage actors run on the head, joined with the stack's token
        status = run(env, "stream", "status")
        if status.returncode == 0 and "stream-sink-0" in status.stdout:
            break
        assert time.monotonic() < deadline, status.stdout + status.stderr
        time.sleep(2)
    stopped = run(env, "stream", "stop")
    assert stopped.returncode == 0, stopped.stderr

    # `ray job logs <submission id>` with the same one-line environment
    submission = re.search(r"Job '(raysubmit_\w+)' submitted successfully", output)
    assert submission, output[-2000:]
    logs = subprocess.run(
        ["bash", "-c", f'eval "$(cryptopred env)" && ray job logs {submission.group(1)}'],
        env={**env, "PATH": f"{venv_bin}:{env['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert logs.returncode == 0 and "running stream-sink-0" in logs.stdout, logs.stderr[-2000:]


def test_the_dashboard_api_wants_the_token(stack):
    """What the dashboard's pages call: refused without the token, answered with it."""
    _, _, client, _ = stack
    url = f"{client['RAY_API_SERVER_ADDRESS']}/api/jobs/"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code in (401, 403)
    token = Path(client["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200 and isinstance(json.loads(resp.read()), list)


def documented_ray_lines():
    """The commands of the README block that starts with `eval "$(uv run cryptopred env)"`."""
    readme = (REPO / "README.md").read_text()
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        if block.startswith('eval "$(uv run cryptopred env)"'):
            return [
                line.split("  #")[0].strip()
                for line in block.splitlines()
                if line.strip() and not line.startswith("#")
            ]
    raise AssertionError('README.md has no block starting with eval "$(uv run cryptopred env)"')


def plain_ip(text):
    """The address, IPv4-mapped IPv6 (`::ffff:127.0.0.1`) as IPv4."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def ray_tool(name):
    return str(Path(sys.executable).with_name(name))


def http_text(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def test_a_trust_data_folder_is_converted_and_passwords_rotate(tmp_path):
    """A data folder from before passwords (initdb --auth=trust) asks for one after `up`, and
    deleting the owner's password file gives it a new password on the next start."""
    from cryptopred.stack.postgres import Postgres
    from cryptopred_core.settings import Settings

    settings = Settings(data_dir=tmp_path, postgres_port=free_port())
    part = Postgres(settings)
    part._prepare()  # initdb --auth=trust: a data folder without passwords
    assert "trust" in (part.pgdata / "pg_hba.conf").read_text()
    anonymous = f"postgresql://postgres@127.0.0.1:{settings.postgres_port}/postgres"
    part.start()
    try:
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(anonymous, connect_timeout=5)
        assert part.healthy()
    finally:
        part.stop()
    secret = settings.secrets_dir / "postgres_password"
    old = secret.read_text()
    secret.unlink()
    part.start()
    try:
        assert part.healthy() and secret.read_text() != old
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(anonymous.replace("postgres@", f"postgres:{old}@"), connect_timeout=5)
    finally:
        part.stop()
