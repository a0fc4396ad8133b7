from typer.testing import CliRunner

from cryptopred_ingest.cli import app


def test_bad_setting_exits_2_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("CRYPTOPRED_WATCHDOG_S", "-3")
    path = tmp_path / "x.csv"
    path.write_text("")
    result = CliRunner().invoke(app, ["replay", "--file", str(path), "--pair", "BTC/USD"])
    assert result.exit_code == 2
    assert "CRYPTOPRED_WATCHDOG_S" in result.output and result.output.count("\n") == 1


def test_bad_speed_and_missing_pair_exit_2(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("")
    result = CliRunner().invoke(
        app, ["replay", "--file", str(path), "--pair", "BTC/USD", "--speed", "0"]
    )
    assert result.exit_code == 2 and "--speed" in result.output
    result = CliRunner().invoke(app, ["replay", "--file", str(path)])
    assert result.exit_code == 2 and "--pair" in result.output
    result = CliRunner().invoke(app, ["synthetic", "--pairs", "btc_usd"])
    assert result.exit_code == 2 and "--pairs" in result.output
