"""What every part of the embedded stack is: where it is, its health, start and stop."""

from __future__ import annotations

from abc import ABC, abstractmethod

import psutil

from cryptopred.stack.process import (
    ProcessRecord,
    read_record,
    stop_group,
    wait_until,
    write_record,
)
from cryptopred_core.settings import Settings


class Part(ABC):
    """One service of the stack: where it is, whether it is healthy, how to start and stop it."""

    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.record_path = self.data_dir / "run" / f"{self.name}.json"
        self.log_path = self.data_dir / "logs" / f"{self.name}.log"

    @property
    @abstractmethod
    def external(self) -> bool:
        """True when an address is configured, so this part is not started here."""

    @property
    @abstractmethod
    def address(self) -> str:
        """A connectable address of the part."""

    @abstractmethod
    def ports(self) -> list[int]:
        """Ports the embedded part needs free before it starts."""

    @abstractmethod
    def healthy(self) -> bool: ...

    @abstractmethod
    def _launch(self) -> psutil.Process:
        """Start the process(es); return the one to record."""

    def record(self) -> ProcessRecord | None:
        return read_record(self.record_path)

    def running(self) -> bool:
        """True when the process this stack started is still alive."""
        rec = self.record()
        return rec is not None and rec.alive()

    def launch(self) -> psutil.Process:
        """Start the part without waiting for it to be healthy; record its pid."""
        proc = self._launch()
        write_record(
            self.record_path,
            ProcessRecord(
                self.name, proc.pid, proc.create_time(), self.address, str(self.log_path)
            ),
        )
        return proc

    def wait_ready(self, proc: psutil.Process) -> None:
        wait_until(self.name, self.healthy, self.settings.start_timeout_s, proc, self.log_path)

    def start(self) -> None:
        self.wait_ready(self.launch())

    def stop(self) -> bool:
        """Stop the process this stack started (by its pid); True if there was one."""
        rec = self.record()
        self.record_path.unlink(missing_ok=True)
        if rec is None or not rec.alive():
            return False
        stop_group(rec.pid, leader_signal=self.leader_signal)
        return True

    #: sent to the recorded process first when it shuts its own children down on it
    leader_signal: int | None = None
