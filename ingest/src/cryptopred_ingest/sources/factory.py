"""Builds a runnable source from a plain, picklable spec (what a Ray actor receives)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptopred_ingest.publish import Publisher
from cryptopred_ingest.runner import pump
from cryptopred_ingest.settings import IngestSettings

SourceKind = Literal["live", "replay-kraken-csv", "replay-jsonl", "synthetic"]


@dataclass(frozen=True)
class SourceSpec:
    """Which source to run and its arguments; `speed` None means as fast as possible."""

    kind: SourceKind
    pairs: tuple[str, ...] = ()
    path: str | None = None
    speed: float | None = None
    days: float = 1.0
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stage(self) -> str:
        return f"ingest-{self.kind}"


def build_runner(
    spec: SourceSpec, settings: IngestSettings, publisher: Publisher, stop: threading.Event
) -> tuple[Callable[[], None], Callable[[], dict[str, int]]]:
    """(run, stats): `run` blocks until the source ends or `stop`; `stats` reads its counters."""

    def publisher_stats() -> dict[str, int]:
        return {"trades": publisher.counts.trades, "rejects": publisher.counts.rejects}

    if spec.kind == "live":
        from cryptopred_ingest.sources.kraken_live import KrakenLiveSource

        state_path = settings.data_dir / "ingest" / "live-state.json"
        live = KrakenLiveSource(
            settings, publisher, spec.pairs or None, stop, state_path=state_path
        )

        def live_stats() -> dict[str, int]:
            return publisher_stats() | {
                "reconnects": live.stats.reconnects,
                "gaps_repaired": live.stats.gaps_repaired,
                "duplicates_dropped": live.stats.duplicates_dropped,
            }

        return live.run, live_stats
    if spec.kind == "synthetic":
        from cryptopred_ingest.sources.synthetic import generate

        batches = generate(spec.pairs, spec.days, spec.seed)
    elif spec.kind == "replay-kraken-csv":
        from cryptopred_ingest.sources.kraken_csv import CsvTrades

        assert spec.path is not None and len(spec.pairs) == 1
        batches = CsvTrades(Path(spec.path), spec.pairs[0], columnar=spec.speed is None).batches()
    else:
        from cryptopred_ingest.sources.jsonl import JsonlTrades

        assert spec.path is not None
        batches = JsonlTrades(Path(spec.path), spec.pairs[0] if spec.pairs else None).batches()
    return (lambda: pump(batches, publisher, spec.speed, stop)), publisher_stats
