"""Builds a runnable source from a plain, picklable spec (what a Ray actor receives)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptopred_ingest.publish import Publisher
from cryptopred_ingest.pump import pump
from cryptopred_ingest.settings import IngestSettings

SourceKind = Literal["live", "replay-kraken-csv", "replay-jsonl", "synthetic"]


@dataclass(frozen=True)
class SourceSpec:
    """Which source to run and its arguments; `speed` None means as fast as possible.

    `wall_clock` paces by event time = wall time instead: trades already in the past go out at
    once, later ones when their time comes (a generator that catches up, then runs live).
    """

    kind: SourceKind
    pairs: tuple[str, ...] = ()
    path: str | None = None
    speed: float | None = None
    days: float = 1.0
    seed: int = 0
    start_ms: int | None = None
    momentum: float = 0.0
    wall_clock: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stage(self) -> str:
        return f"ingest-{self.kind}"


LIVE_DAYS = 3650.0  # how far a live generator runs: for all practical purposes, until stopped


def synthetic_spec(
    pairs: tuple[str, ...],
    days: float,
    seed: int,
    momentum: float = 0.0,
    live: bool = False,
    now_ms: int | None = None,
    start_prices: dict[str, float] | None = None,
) -> SourceSpec:
    """A generator spec; `live` starts `days` before now (on a minute) and runs on wall time.

    `start_prices` (pair -> price) lets a generator go on from earlier data without a jump.
    """
    if not live:
        return SourceSpec("synthetic", pairs=pairs, days=days, seed=seed, momentum=momentum)
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    start_ms = (now_ms - int(days * 86_400_000)) // 60_000 * 60_000
    return SourceSpec(
        "synthetic",
        pairs=pairs,
        days=days + LIVE_DAYS,
        seed=seed,
        start_ms=start_ms,
        momentum=momentum,
        wall_clock=True,
        extra={"start_prices": start_prices} if start_prices else {},
    )


def build_runner(
    spec: SourceSpec, settings: IngestSettings, publisher: Publisher, stop: threading.Event
) -> tuple[Callable[[], None], Callable[[], dict[str, int]]]:
    """(run, stats): `run` blocks until the source ends or `stop`; `stats` reads its counters."""

    def publisher_stats() -> dict[str, int]:
        return {"trades": publisher.counts.trades, "rejects": publisher.counts.rejects}

    if spec.kind == "live":
        from cryptopred_ingest.sources.kraken_live import KrakenLiveSource
        from cryptopred_ingest.sources.watermarks import DbWatermarkWriter

        state_path = settings.data_dir / "ingest" / "live-state.json"
        watermarks = (
            DbWatermarkWriter(settings.db_url, settings.db_dialect)
            if settings.live_watermarks
            else None
        )
        live = KrakenLiveSource(
            settings,
            publisher,
            spec.pairs or None,
            stop,
            state_path=state_path,
            watermarks=watermarks,
        )

        def live_stats() -> dict[str, int]:
            return publisher_stats() | {
                "reconnects": live.stats.reconnects,
                "gaps_repaired": live.stats.gaps_repaired,
                "gaps_unrepaired": live.stats.gaps_unrepaired,
                "id_jumps": live.stats.id_jumps,
                "duplicates_dropped": live.stats.duplicates_dropped,
            }

        return live.run, live_stats
    if spec.kind == "synthetic":
        from cryptopred_ingest.sources.synthetic import DEFAULT_START_MS, generate

        start_ms = DEFAULT_START_MS if spec.start_ms is None else spec.start_ms
        prices = spec.extra.get("start_prices")
        batches = generate(spec.pairs, spec.days, spec.seed, start_ms, spec.momentum, prices)
    elif spec.kind == "replay-kraken-csv":
        from cryptopred_ingest.sources.kraken_csv import CsvTrades

        assert spec.path is not None and len(spec.pairs) == 1
        batches = CsvTrades(Path(spec.path), spec.pairs[0], columnar=spec.speed is None).batches()
    else:
        from cryptopred_ingest.sources.jsonl import JsonlTrades

        assert spec.path is not None
        batches = JsonlTrades(Path(spec.path), spec.pairs[0] if spec.pairs else None).batches()

    def run() -> None:
        pump(batches, publisher, spec.speed, stop, wall_clock=spec.wall_clock)

    return run, publisher_stats
