"""Ray Train resumes a run of the same name from its last rank-0 checkpoint."""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cryptopred_training.flow import run_training
from cryptopred_training.ray_fit import RayFitOptions, ray_fitter
from cryptopred_training.synthetic import synthetic_indicator_frame

from .conftest import RAY_FIT_CONFIG, train_controller_handles

pytestmark = pytest.mark.integration


def test_a_second_fit_with_the_same_name_continues_after_the_last_epoch(
    ray_session: Any, tmp_path: Path
) -> None:
    frame = synthetic_indicator_frame(1200, seed=5)
    options = RayFitOptions(storage_dir=tmp_path / "runs", run_name="resume-me")
    ctrl_c = signal.getsignal(signal.SIGINT)
    first = run_training(frame, RAY_FIT_CONFIG, fitter=ray_fitter(options)).models.fit_result
    assert [r.epoch for r in first.history] == [0, 1]
    # Ray Train's SIGINT handler is gone with the run, and nothing holds its controller
    assert signal.getsignal(signal.SIGINT) is ctrl_c
    assert train_controller_handles() == []

    longer = replace(RAY_FIT_CONFIG, max_epochs=3)
    second = run_training(frame, longer, fitter=ray_fitter(options)).models.fit_result
    assert [r.epoch for r in second.history] == [0, 1, 2]
    # epochs 0 and 1 come from the checkpoint, not from training again (timings would differ)
    assert second.history[:2] == first.history
    assert len(list((tmp_path / "runs" / "resume-me").glob("checkpoint_*"))) >= 2
