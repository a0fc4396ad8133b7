import pytest
from typer.testing import CliRunner

from cryptopred.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("CRYPTOPRED_KAFKA_BOOTSTRAP", "localhost"),
        ("CRYPTOPRED_DB_DIALECT", "sqlite"),
        ("CRYPTOPRED_TOPIC_PARTITIONS", "0"),
    ],
)
def test_a_bad_setting_fails_at_start_with_one_line(env, value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["status"], env={env: value})
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: bad setting " + env)


def test_help_lists_the_stack_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("up", "down", "status"):
        assert command in result.output


def test_env_prints_exports_for_rays_and_mlflows_own_tools(tmp_path, monkeypatch):
    import shlex
    import subprocess

    monkeypatch.chdir(tmp_path)
    data_dir = tmp_path / "my data"
    result = runner.invoke(
        app, ["env"], env={"CRYPTOPRED_DATA_DIR": str(data_dir), "CRYPTOPRED_RAY_PORT": "7000"}
    )
    assert result.exit_code == 0, result.output
    # what a shell makes of `eval "$(cryptopred env)"`
    shell = subprocess.run(
        ["bash", "-c", f"eval {shlex.quote(result.output)}; env"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    exported = dict(line.split("=", 1) for line in shell.stdout.splitlines() if "=" in line)
    assert exported["RAY_ADDRESS"] == "127.0.0.1:7000"
    assert exported["RAY_API_SERVER_ADDRESS"] == "http://127.0.0.1:8265"
    assert exported["RAY_DASHBOARD_ADDRESS"] == "http://127.0.0.1:8265"
    assert exported["RAY_AUTH_MODE"] == "token"
    assert exported["RAY_AUTH_TOKEN_PATH"] == str(data_dir / "ray" / "auth_token")
    assert exported["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert exported["CRYPTOPRED_DATA_DIR"] == str(data_dir)
