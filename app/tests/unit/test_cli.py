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
