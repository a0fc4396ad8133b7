"""MLflow's chatter is kept from the terminal while a run is logged; its errors are not."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest

from cryptopred_training.mlflow_quiet import INTEGER_SCHEMA_HINT, quiet_mlflow


def test_prints_info_lines_and_the_integer_hint_are_kept_from_the_terminal(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    warnings.simplefilter("always")  # pytest restores the filters after the test
    mlflow_log = logging.getLogger("mlflow.tracking.fluent")
    before = logging.getLogger("mlflow").level
    with (
        caplog.at_level(logging.DEBUG, logger="cryptopred_training.mlflow_quiet"),
        warnings.catch_warnings(record=True) as seen,
        quiet_mlflow(),
    ):
        print("🏃 View run funny-fowl at: http://127.0.0.1:5000/#/experiments/1")
        print("Successfully registered model 'X'.", file=sys.stderr)
        mlflow_log.info("Experiment with name 'X' does not exist. Creating a new experiment.")
        assert not logging.getLogger("mlflow").isEnabledFor(logging.WARNING)
        assert logging.getLogger("mlflow").isEnabledFor(logging.ERROR)
        hint = f"{INTEGER_SCHEMA_HINT}(s). Integer columns ..."
        warnings.warn(hint, UserWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    assert [str(w.message) for w in seen] == ["something else"]
    assert "View run funny-fowl" in caplog.text and "Successfully registered" in caplog.text
    assert logging.getLogger("mlflow").level == before


def test_an_error_inside_still_raises_and_restores_the_level() -> None:
    before = logging.getLogger("mlflow").level
    with pytest.raises(RuntimeError, match="registry down"), quiet_mlflow():
        raise RuntimeError("registry down")
    assert logging.getLogger("mlflow").level == before
