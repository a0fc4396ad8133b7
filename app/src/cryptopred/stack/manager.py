"""`up`, `down` and `status` of the embedded stack."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cryptopred.stack.part import Part
from cryptopred.stack.parts import all_parts, port_conflicts
from cryptopred.stack.process import PartError
from cryptopred_core import topics
from cryptopred_core.db import connect, create_schema
from cryptopred_core.kafka import ensure_topics
from cryptopred_core.settings import Settings

Say = Callable[[str], None]


@dataclass(frozen=True)
class PartStatus:
    name: str
    mode: str  # "embedded" or "external"
    address: str
    healthy: bool
    running: bool


def up(settings: Settings, say: Say = print) -> list[str]:
    """Start every part that has no external address, then create topics and schema.

    Parts already running are left as they are. A taken port or a failed start raises
    PartError after stopping whatever this call started.
    """
    parts = [p for p in all_parts(settings) if not p.external]
    to_start = [p for p in parts if not p.running()]
    for part in to_start:
        taken = port_conflicts(part)
        if taken:
            ports = ", ".join(str(p) for p in taken)
            raise PartError(part.name, f"port {ports} on {settings.bind_host} is already in use")
    started: list[Part] = []
    try:
        launched = []
        for part in to_start:  # launch all, then wait: the slow ones start side by side
            say(f"starting {part.name} ...")
            with _as_part_error(part):
                launched.append((part, part.launch()))
            started.append(part)
        for part, proc in launched:
            with _as_part_error(part):
                part.wait_ready(proc)
            say(f"{part.name} is up at {part.address}")
        _provision(settings)
    except BaseException:
        for part in reversed(started):
            part.stop()
        raise
    return [p.name for p in started]


@contextmanager
def _as_part_error(part: Part) -> Iterator[None]:
    """Name the part in any unexpected failure while starting it."""
    try:
        yield
    except PartError:
        raise
    except Exception as exc:
        raise PartError(part.name, f"{type(exc).__name__}: {exc}") from None


def _provision(settings: Settings) -> None:
    try:
        ensure_topics(settings, topics.ALL_TOPICS, settings.topic_partitions)
    except Exception as exc:
        raise PartError("broker", f"creating topics failed: {exc}") from None
    try:
        with connect(settings.db_url) as conn:
            create_schema(conn, settings.db_dialect)
    except Exception as exc:
        raise PartError("postgres", f"creating the schema failed: {exc}") from None


def down(settings: Settings, say: Say = print) -> list[str]:
    """Stop the parts this stack started (by their recorded pids); data stays under data_dir."""
    stopped = []
    for part in reversed(all_parts(settings)):
        if part.external:
            continue
        if part.stop():
            stopped.append(part.name)
            say(f"stopped {part.name}")
    return stopped


def status(settings: Settings) -> list[PartStatus]:
    out = []
    for part in all_parts(settings):
        out.append(
            PartStatus(
                name=part.name,
                mode="external" if part.external else "embedded",
                address=part.address,
                healthy=part.healthy(),
                running=part.external or part.running(),
            )
        )
    return out
