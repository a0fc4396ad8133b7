"""A retraining run's child process: its outcome, and the watchdog's time and memory bounds."""

import sys
import threading
import time

import psutil

from cryptopred_training.retrain.child import last_error_line, run_child


def _python(code):
    return [sys.executable, "-c", code]


def test_a_child_that_succeeds_reports_no_reason(tmp_path):
    log = tmp_path / "run.log"
    result = run_child(_python("print('trained')"), {}, log, timeout_s=60, max_rss_mb=4096)
    assert result.ok and result.reason == "" and result.returncode == 0
    assert log.read_text().strip() == "trained"


def test_a_failing_child_reports_its_error_line(tmp_path):
    code = "import sys; print('epoch 1'); print('error: bad training data: no rows'); sys.exit(1)"
    result = run_child(_python(code), {}, tmp_path / "run.log", timeout_s=60, max_rss_mb=4096)
    assert not result.ok
    assert result.reason == "exit 1: bad training data: no rows"


def test_a_crash_reports_the_last_line(tmp_path):
    code = "raise RuntimeError('the fit broke')"
    result = run_child(_python(code), {}, tmp_path / "run.log", timeout_s=60, max_rss_mb=4096)
    assert result.returncode == 1
    assert result.reason == "exit 1: RuntimeError: the fit broke"


def test_a_child_past_its_time_is_stopped_with_its_children(tmp_path):
    # the child starts a grandchild that would outlive it
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        "print(p.pid, flush=True); time.sleep(120)"
    )
    log = tmp_path / "run.log"
    started = time.monotonic()
    result = run_child(_python(code), {}, log, timeout_s=3, max_rss_mb=4096, poll_s=0.2)
    assert time.monotonic() - started < 30
    assert result.returncode is None
    assert result.reason == "stopped: still running after 3 s"
    grandchild = int(log.read_text().split()[0])
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == "zombie"


def test_a_child_above_its_memory_is_stopped(tmp_path):
    code = (
        "import time; block = bytearray(300 * 2**20); "
        "block[::4096] = b'x' * len(block[::4096]); time.sleep(60)"
    )
    result = run_child(
        _python(code), {}, tmp_path / "run.log", timeout_s=60, max_rss_mb=200, poll_s=0.2
    )
    assert result.returncode is None
    assert result.reason.startswith("stopped: its processes used ")
    assert result.reason.endswith("above 200 MiB")
    assert result.peak_rss_mb > 200


def test_a_stop_ends_the_child(tmp_path):
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    result = run_child(
        _python("import time; time.sleep(60)"),
        {},
        tmp_path / "run.log",
        timeout_s=60,
        max_rss_mb=4096,
        poll_s=0.2,
        stop=stop,
    )
    assert result.reason == "stopped: the scheduler was stopped"


def test_last_error_line_prefers_the_error_line(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("error: database: connection refused\nTraceback...\n  more\n\n")
    assert last_error_line(log) == "database: connection refused"
    assert last_error_line(tmp_path / "absent.log") == ""
