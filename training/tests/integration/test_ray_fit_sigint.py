"""Ctrl-C around a Ray Train fit: the driver's own handler comes back, an abort is an interrupt.

Ray Train installs a SIGINT handler for each run and leaves it in place afterwards (holding the
run's controller actor); a long-lived driver such as the demo must get Ctrl-C back. The
finished run's side is checked in test_ray_resume (its fits), the aborted run's here.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cryptopred_training.flow import run_training
from cryptopred_training.ray_fit import RayFitOptions, ray_fitter
from cryptopred_training.synthetic import synthetic_indicator_frame

from .conftest import RAY_FIT_CONFIG, train_controller_handles

pytestmark = pytest.mark.integration


def test_ctrl_c_during_a_fit_aborts_the_run_as_keyboard_interrupt(
    ray_session: Any, tmp_path: Path
) -> None:
    before = signal.getsignal(signal.SIGINT)
    seen: dict[str, Any] = {}

    def interrupt_once_ray_train_listens() -> None:
        deadline = time.monotonic() + 120
        while signal.getsignal(signal.SIGINT) is before and time.monotonic() < deadline:
            time.sleep(0.05)
        handler = signal.getsignal(signal.SIGINT)
        # its name only: the handler itself holds the run's controller
        seen["replaced"] = handler is not before
        seen["handler"] = getattr(handler, "__qualname__", repr(handler))
        del handler
        time.sleep(1.0)  # into the run
        os.kill(os.getpid(), signal.SIGINT)

    frame = synthetic_indicator_frame(3000, seed=4)
    options = RayFitOptions(storage_dir=tmp_path / "runs", run_name="sigint-aborted")
    sender = threading.Thread(target=interrupt_once_ray_train_listens, daemon=True)
    sender.start()
    with pytest.raises(KeyboardInterrupt):
        run_training(frame, replace(RAY_FIT_CONFIG, max_epochs=200), fitter=ray_fitter(options))
    sender.join(timeout=5)
    # the interrupt went through Ray Train's handler (it aborted the run), not the default one
    assert seen["replaced"] and seen["handler"].endswith("sigint_handler"), seen
    assert signal.getsignal(signal.SIGINT) is before
    assert train_controller_handles() == []
