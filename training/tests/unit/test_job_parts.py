"""Ray-, MLflow- and DB-free parts of the training job: settings, query, CLI parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from cryptopred_training.cli import parse_horizons, parse_time_ms
from cryptopred_training.settings import TrainSettings, model_name
from cryptopred_training.source import COLUMNS, indicator_query
from cryptopred_training.train_run import run_name_for


def test_env_overrides_reach_the_train_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOPRED_TRAIN_MAX_EPOCHS", "9")
    monkeypatch.setenv("CRYPTOPRED_TRAIN_PROMOTION_MARGIN", "0.05")
    monkeypatch.setenv("CRYPTOPRED_TRAIN_WINDOW_STEPS", "30")
    config = TrainSettings().train_config(candle_seconds=300, horizon_seconds=(300, 900))
    assert config.max_epochs == 9 and config.promotion_margin == 0.05
    assert config.window_steps == 30 and config.candle_seconds == 300
    assert config.horizon_seconds == (300, 900)


def test_defaults_match_train_config() -> None:
    config = TrainSettings().train_config(candle_seconds=60)
    assert config.max_epochs == 4 and config.walk_forward_folds == 2
    assert config.horizon_seconds == (60, 300, 900)


def test_bad_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOPRED_TRAIN_PROMOTION_MARGIN", "1.5")
    with pytest.raises(ValueError, match="train_promotion_margin"):
        TrainSettings()


def test_model_name() -> None:
    assert model_name("BTC/USD", 60) == "BTC-USD-60s"
    assert model_name("eth/eur", 300) == "ETH-EUR-300s"


def test_query_reads_final_rows_of_one_pair_in_the_range() -> None:
    query, params = indicator_query("BTC/USD", 60, 1_000, 2_000)
    text = query.as_string(None)
    assert 'FROM "technical_indicators"' in text and "AND final AND" in text
    assert "window_start_ms >= %s" in text and "window_start_ms < %s" in text
    assert text.endswith("ORDER BY window_start_ms")
    assert params == ["BTC/USD", 60, 1_000, 2_000]
    open_query, open_params = indicator_query("BTC/USD", 60, None, None)
    assert "window_start_ms >=" not in open_query.as_string(None) and open_params == ["BTC/USD", 60]
    assert {"final", "close", "rsi_14", "window_start_ms"} <= set(COLUMNS)


def test_resume_reuses_the_last_run_name(tmp_path: Path) -> None:
    settings = TrainSettings(data_dir=tmp_path)
    first = run_name_for(settings, "BTC-USD-60s", resume=False)
    assert first.startswith("BTC-USD-60s-")
    assert run_name_for(settings, "BTC-USD-60s", resume=True) == first
    assert run_name_for(settings, "ETH-USD-60s", resume=True).startswith("ETH-USD-60s-")


def test_cli_parsers() -> None:
    assert parse_time_ms("1700000000000") == 1_700_000_000_000
    assert parse_time_ms("2023-11-14T22:13:20") == 1_700_000_000_000
    assert parse_time_ms(None) is None
    assert parse_horizons("60, 300,900") == (60, 300, 900)
    with pytest.raises(typer.BadParameter):
        parse_horizons("60,-5")
    with pytest.raises(typer.BadParameter):
        parse_time_ms("yesterday")


@pytest.mark.parametrize(
    ("free", "workers", "expected"),
    [(8.0, 2, 4.0), (3.0, 2, 1.0), (1.6, 1, 1.0), (0.45, 1, 0.4), (0.6, 2, 0.3), (0.0, 1, 0.1)],
)
def test_a_worker_asks_for_no_more_cpus_than_are_free(
    free: float, workers: int, expected: float
) -> None:
    from cryptopred_training.train_run import share_of_free_cpus

    assert share_of_free_cpus(free, workers) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("CRYPTOPRED_RETRAIN_EVERY", "sometimes", "CRYPTOPRED_RETRAIN_EVERY"),
        ("CRYPTOPRED_RETRAIN_WINDOW", "off", "CRYPTOPRED_RETRAIN_WINDOW"),
        ("CRYPTOPRED_RETRAIN_WINDOW", "0d", "longer than zero"),
    ],
)
def test_a_bad_retraining_setting_fails_with_one_line(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    from pydantic import ValidationError

    from cryptopred_core.settings import describe_error

    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError) as caught:
        TrainSettings()
    line = describe_error(caught.value)
    assert message in line and "\n" not in line


def test_retraining_is_off_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRYPTOPRED_RETRAIN_EVERY", raising=False)
    assert TrainSettings().retrain_every_s is None
    monkeypatch.setenv("CRYPTOPRED_RETRAIN_EVERY", "6h")
    monkeypatch.setenv("CRYPTOPRED_RETRAIN_WINDOW", "36h")
    settings = TrainSettings()
    assert (settings.retrain_every_s, settings.retrain_window_s) == (21_600, 129_600)


def test_the_training_lock_lets_one_run_at_a_time(tmp_path: Path) -> None:
    from cryptopred_training.train_run import training_lock

    said: list[str] = []
    settings = TrainSettings(data_dir=tmp_path, train_lock_timeout_s=0.5)
    held = training_lock(settings, said.append)
    try:
        with pytest.raises(TimeoutError, match="CRYPTOPRED_TRAIN_LOCK_TIMEOUT_S"):
            training_lock(settings, said.append)
        assert said and "another training run holds" in said[0]
    finally:
        held.release()
    training_lock(settings, said.append).release()  # free again


def test_a_search_cannot_resume(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cryptopred_training.cli import app
    from cryptopred_training.train_run import TrainRequest

    env = {"CRYPTOPRED_DATA_DIR": str(tmp_path)}
    done = CliRunner().invoke(app, ["--pair", "BTC/USD", "--trials", "3", "--resume"], env=env)
    assert done.exit_code == 2 and "--resume cannot be combined" in done.output
    done = CliRunner().invoke(app, ["--pair", "BTC/USD", "--trials", "0"], env=env)
    assert done.exit_code == 2
    with pytest.raises(ValueError, match="--resume"):
        TrainRequest("BTC/USD", 60, resume=True, trials=2)
    with pytest.raises(ValueError, match="trials"):
        TrainRequest("BTC/USD", 60, trials=0)
    assert TrainSettings(train_trials=4).train_trials == 4
