"""Stage and source actors' fault hook and status lines (no Ray)."""

import threading

import psycopg
import pytest

from cryptopred_core.supervision import Supervisor, read_record
from cryptopred_ingest.actors import TradeSourceWorker
from cryptopred_ingest.cli import source_status_line
from cryptopred_ingest.stream.actors import FaultHooksDisabledError, StageWorker
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_ingest.stream_cli import print_status


class Runner:
    def __init__(self) -> None:
        self.faults: list[str] = []

    def inject_fault(self, message: str) -> None:
        self.faults.append(message)


def worker(fault_hooks: bool) -> StageWorker:
    w = StageWorker.__new__(StageWorker)  # the actor's state without Ray or Kafka
    w.settings = StreamSettings(fault_hooks=fault_hooks)
    w.stage_name, w.state = "candles", "running"
    w.runner = Runner()  # type: ignore[assignment]
    return w


def test_fault_injection_is_refused_unless_fault_hooks_is_on():
    with pytest.raises(FaultHooksDisabledError):
        worker(fault_hooks=False).inject_fault("boom")
    on = worker(fault_hooks=True)
    on.inject_fault("boom")
    assert on.runner.faults == ["boom"]  # type: ignore[union-attr]


def test_fault_hooks_setting_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("CRYPTOPRED_FAULT_HOOKS", "true")
    assert StreamSettings().fault_hooks is True


def test_stream_status_shows_restarts_and_the_last_error(capsys):
    print_status(
        [
            {
                "actor": "stream-candles-0",
                "state": "running",
                "restarts": 2,
                "consumed": 10,
                "consumed_per_s": 1.0,
                "lag_total": 0,
                "dead": 0,
                "last_event_ms": None,
                "last_error": "InjectedFaultError: boom\nTraceback ...",
                "last_error_ms": 1_700_000_000_000,
            },
            {"actor": "stream-sink-0", "error": "RayActorError: dead", "restarts": 1},
        ]
    )
    out = capsys.readouterr().out
    assert "restarts" in out
    candles = out.splitlines()[1]
    assert candles.split()[:3] == ["stream-candles-0", "running", "2"]
    assert "last error at 2023-11-14 22:13:20: InjectedFaultError: boom" in out
    assert "Traceback" not in out
    assert "stream-sink-0" in out and "RayActorError: dead" in out


def test_source_status_line_shows_restarts_and_the_last_error():
    line = source_status_line(
        "ingest-live",
        {"trades": 5, "rejects": 0, "restarts": 3, "last_error": "OSError: reset", "done": False},
    )
    assert line == "ingest-live: trades=5 rejects=0 restarts=3 last error: OSError: reset"


class ProcessEndedError(Exception):
    pass


def end_process(code: int) -> None:
    raise ProcessEndedError(code)


class DictStore(dict):
    def put(self, key, value):
        self[key] = value


def test_a_stage_that_raises_ends_its_process_with_the_error_recorded():
    store = DictStore()
    w = StageWorker.__new__(StageWorker)
    w.settings = StreamSettings()
    w.stage_name, w.replica, w.state, w.runner = "candles", 0, "starting", None
    w.stop_event, w.done = threading.Event(), threading.Event()
    w.supervisor = Supervisor(
        "ns/stream-candles-0", store, restarted=False, exit_process=end_process
    )

    class Failing:
        def run(self, stop):
            raise psycopg.errors.UndefinedTable('relation "candles" does not exist')

    w._build_runner = Failing  # type: ignore[method-assign]
    with pytest.raises(ProcessEndedError) as ended:
        w._run()
    assert ended.value.args == (1,)
    assert w.state == "failed" and w.done.is_set()
    record = read_record(store, "ns/stream-candles-0")
    assert record.last_error == 'UndefinedTable: relation "candles" does not exist'


def test_a_source_that_raises_ends_its_process_with_the_error_recorded():
    store = DictStore()
    w = TradeSourceWorker.__new__(TradeSourceWorker)
    w.name = "ingest-live"
    w.stop_event, w.done = threading.Event(), threading.Event()
    w.supervisor = Supervisor("ns/ingest-live", store, restarted=False, exit_process=end_process)

    def run_source() -> None:
        raise OSError("connection reset")

    w.run_source = run_source
    with pytest.raises(ProcessEndedError):
        w._run()
    assert read_record(store, "ns/ingest-live").last_error == "OSError: connection reset"
