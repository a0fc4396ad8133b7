"""`cryptopred retrain`: the status line of a model, and the commands that need no cluster."""

from typer.testing import CliRunner

from cryptopred_training.retrain.cli import app, describe_model

NOW_MS = 1_796_000_000_000


def _row(**changes):
    row = {
        "name": "BTC-USD-60s",
        "last": {
            "started_ms": NOW_MS - 3_600_000,
            "trigger": "schedule",
            "decision": "challenger",
            "version": "4",
            "reason": "test mae_60s 1.2 does not beat persistence 1.1 by margin 2.00%",
        },
        "next_due_ms": NOW_MS + 5 * 3_600_000,
        "next_trigger": "schedule",
        "running_since_ms": None,
    }
    return row | changes


def test_a_model_line_names_the_outcome_its_reason_and_the_next_slot():
    line = describe_model(_row(), NOW_MS)
    assert line.startswith("BTC-USD-60s")
    assert "(schedule): challenger v4: test mae_60s 1.2 does not beat persistence" in line
    assert line.endswith("next in 300 min (schedule)")


def test_a_failed_run_a_running_one_and_a_new_model():
    failed = _row(
        last={
            "started_ms": NOW_MS,
            "trigger": "demotion",
            "decision": "failed",
            "version": None,
            "reason": "exit 1: bad training data: no rows",
        },
        next_due_ms=NOW_MS - 1,
    )
    assert "(demotion): failed: exit 1: bad training data: no rows; next due now" in (
        describe_model(failed, NOW_MS)
    )
    running = describe_model(_row(running_since_ms=NOW_MS - 1000), NOW_MS)
    assert "running since" in running
    fresh = describe_model(_row(last=None, next_due_ms=None), NOW_MS)
    assert "never trained; no schedule" in fresh


def test_cron_prints_the_schedule_of_the_setting(monkeypatch):
    monkeypatch.setenv("CRYPTOPRED_RETRAIN_EVERY", "4h")
    result = CliRunner().invoke(app, ["cron"])
    assert result.exit_code == 0 and result.output.strip() == "0 */4 * * *"
    monkeypatch.setenv("CRYPTOPRED_RETRAIN_EVERY", "5h")
    result = CliRunner().invoke(app, ["cron"])
    assert result.exit_code == 2


def test_start_refuses_when_retraining_is_off(monkeypatch):
    monkeypatch.setenv("CRYPTOPRED_RETRAIN_EVERY", "off")
    result = CliRunner().invoke(app, ["start"])
    assert result.exit_code == 2
