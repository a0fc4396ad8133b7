"""Supervision of long-running actors: a failure ends the actor's process so Ray restarts it.

Each supervised actor keeps a crash record (restarts, consecutive failures, last error) in a
key-value store outside its process: Ray's internal KV in a cluster. The record must outlive
the process that failed (the restarted one reads it to back off) and be readable while the
actor is down or backing off (`status` reads it from the driver), which an actor's own memory
is not; the DB is not used because it may be the very thing that failed.

On a restarted start the actor waits `crash_backoff_s(consecutive)` before running again, so
an actor that fails at once on every start restarts at most every `crash_backoff_max_s`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NoReturn, Protocol

log = logging.getLogger(__name__)

#: a run this long without failing resets the consecutive failure count
HEALTHY_AFTER_S = 60.0
#: longest error text kept in a crash record
ERROR_MAX_CHARS = 2000
KV_NAMESPACE = "cryptopred-supervision"


class KeyValue(Protocol):
    """Where crash records live (Ray's internal KV; a dict in unit tests)."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...


class RayKeyValue:
    """Ray's internal KV of the connected cluster (GCS-backed: it outlives actor processes)."""

    def get(self, key: str) -> bytes | None:
        from ray.experimental import internal_kv

        value = internal_kv._internal_kv_get(key, namespace=KV_NAMESPACE)
        return bytes(value) if value is not None else None

    def put(self, key: str, value: bytes) -> None:
        from ray.experimental import internal_kv

        internal_kv._internal_kv_put(key, value, overwrite=True, namespace=KV_NAMESPACE)


@dataclass
class CrashRecord:
    """What `status` shows of an actor's failures."""

    restarts: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_ms: int | None = None

    @classmethod
    def decode(cls, raw: bytes | None) -> CrashRecord:
        if not raw:
            return cls()
        fields: dict[str, Any] = json.loads(raw)
        return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()


def crash_backoff_s(consecutive_failures: int, max_s: float = 30.0) -> float:
    """Wait before the next start after `consecutive_failures` failures: 0, 1, 2, 4 ... max_s."""
    if consecutive_failures <= 0:
        return 0.0
    return float(min(2.0 ** min(consecutive_failures - 1, 32), max_s))


def read_record(store: KeyValue, key: str) -> CrashRecord:
    """The crash record under `key` (an empty one when there is none or it is unreadable)."""
    try:
        return CrashRecord.decode(store.get(key))
    except (ValueError, TypeError):
        return CrashRecord()


def flush_logs() -> None:
    """Flush every logging handler and the standard streams (before `os._exit`)."""
    for handler in [*logging.getLogger().handlers, *log.handlers]:
        with contextlib.suppress(OSError, ValueError):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def _exit_process(code: int) -> NoReturn:
    flush_logs()
    os._exit(code)


class Supervisor:
    """The crash record of one actor, its restart count, backoff and fatal exit."""

    def __init__(
        self,
        key: str,
        store: KeyValue,
        *,
        restarted: bool,
        backoff_max_s: float = 30.0,
        healthy_after_s: float = HEALTHY_AFTER_S,
        exit_process: Callable[[int], None] = _exit_process,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.store = store
        self.backoff_max_s = backoff_max_s
        self.healthy_after_s = healthy_after_s
        self.exit_process = exit_process
        self.clock_s = clock_s
        self.restarted = restarted
        self.record = read_record(store, key) if restarted else CrashRecord()
        if restarted:
            self.record.restarts += 1
        self._save()
        self.started_s = clock_s()

    def backoff_s(self) -> float:
        """How long this start waits before running (0 on a first start)."""
        if not self.restarted:
            return 0.0
        return crash_backoff_s(self.record.consecutive_failures, self.backoff_max_s)

    def wait_backoff(self, stop: threading.Event) -> bool:
        """Wait the crash-loop backoff; False when `stop` was set meanwhile."""
        wait_s = self.backoff_s()
        if wait_s > 0:
            log.warning("%s: restart %d, waiting %.0f s", self.key, self.record.restarts, wait_s)
        return not stop.wait(wait_s)

    def note_healthy(self) -> None:
        """Call regularly while running: a long enough run resets the consecutive failures."""
        if self.record.consecutive_failures and (
            self.clock_s() - self.started_s >= self.healthy_after_s
        ):
            self.record.consecutive_failures = 0
            self._save()

    def fail(self, what: str, exc: BaseException) -> None:
        """Log and record the error, then end the process (exit code 1) so Ray restarts it."""
        error = f"{type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS]
        log.error("%s failed; ending the process for a restart", what, exc_info=exc)
        self.record.consecutive_failures += 1
        self.record.last_error = error
        self.record.last_error_ms = int(self.clock_s() * 1000)
        try:
            self._save()
        finally:
            self.exit_process(1)

    def _save(self) -> None:
        try:
            self.store.put(self.key, self.record.encode())
        except Exception as exc:  # the record is informative: never block a restart
            log.warning("could not save the crash record of %s: %s", self.key, exc)


def ray_supervisor(key: str, backoff_max_s: float) -> Supervisor:
    """A Supervisor for the current Ray actor, its record in Ray's internal KV."""
    import ray

    restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
    return Supervisor(key, RayKeyValue(), restarted=restarted, backoff_max_s=backoff_max_s)


def crash_record(key: str) -> CrashRecord:
    """The crash record of an actor, read from the driver (Ray must be initialised)."""
    return read_record(RayKeyValue(), key)
