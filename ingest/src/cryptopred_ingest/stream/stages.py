"""The stages of the streaming pipeline, by name, and how to build each from settings."""

from __future__ import annotations

from collections.abc import Callable

from cryptopred.pipeline.stage import Stage
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_ingest.stream.sink import SinkStage


def _sink(settings: StreamSettings) -> Stage:
    return SinkStage()


# pipeline order: upstream first
_FACTORIES: dict[str, Callable[[StreamSettings], Stage]] = {
    "sink": _sink,
}
_WRITES_DB = {"sink"}

STAGES = tuple(_FACTORIES)


def build_stage(name: str, settings: StreamSettings) -> Stage:
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; expected one of {STAGES}") from None
    return factory(settings)


def uses_db(name: str) -> bool:
    """True for stages whose rows the runner writes to the DB before committing."""
    return name in _WRITES_DB
