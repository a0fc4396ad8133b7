"""Resumable REST backfill: pages of trades per pair, a cursor file per pair under the data dir."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptopred_ingest.publish import Publisher
from cryptopred_ingest.reconnect import Backoff
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.sources.kraken_rest import TradesClient

log = logging.getLogger(__name__)

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_time_ns(text: str, now_ns: int) -> int:
    """`6h` (before now), `2026-11-01T00:00Z` or epoch seconds -> epoch nanoseconds."""
    match = _RELATIVE.match(text)
    if match:
        return now_ns - int(float(match.group(1)) * _UNIT_S[match.group(2)] * 1_000_000_000)
    if re.fullmatch(r"\d{9,10}(\.\d+)?", text.strip()):
        return int(float(text) * 1_000_000_000)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"bad time {text!r}: use 6h, 2d or 2026-11-01T00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


@dataclass
class Cursor:
    """Where a pair's backfill stands: the next REST `since` and the last trade id produced."""

    since_ns: int
    last_trade_id: int


class CursorStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, pair: str) -> Path:
        return self.directory / f"{pair.replace('/', '-')}.json"

    def load(self, pair: str) -> Cursor | None:
        path = self.path(pair)
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return Cursor(int(data["since_ns"]), int(data["last_trade_id"]))

    def save(self, pair: str, cursor: Cursor) -> None:
        """Write atomically, so a crash leaves the old or the new cursor, never half of one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path(pair).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(cursor)))
        tmp.replace(self.path(pair))


def cursor_dir(data_dir: Path) -> Path:
    return data_dir / "ingest" / "backfill"


def backfill_pair(
    pair: str,
    since_ns: int,
    until_ns: int | None,
    client: TradesClient,
    publisher: Publisher,
    store: CursorStore,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Produce the pair's trades in [since, until); resume from its cursor. Returns the count.

    After each page the producer is flushed and only then the cursor saved: a crash can repeat
    at most the trades of one page, and those are filtered out by trade id on the next run.
    """
    cursor = store.load(pair)
    start_ns, last_id = since_ns, -1
    if cursor is not None and cursor.since_ns >= since_ns:
        start_ns, last_id = cursor.since_ns, cursor.last_trade_id
        log.info("backfill %s: resuming at since=%d after trade %d", pair, start_ns, last_id)
    produced = 0
    for page in client.pages(pair, start_ns, until_ns):
        for trade in page.trades:
            if trade.trade_id is not None and trade.trade_id <= last_id:
                continue
            publisher.trade(trade)
            last_id = trade.trade_id if trade.trade_id is not None else last_id
            produced += 1
        for rej in page.rejects:
            publisher.reject(rej.reason, rej.raw)
        publisher.flush()
        next_ns = max(page.last_ns, start_ns)
        store.save(pair, Cursor(next_ns, last_id))
        if progress is not None:
            progress(next_ns)
    return produced


def backfill(
    pairs: Sequence[str],
    since_ns: int,
    until_ns: int | None,
    client: TradesClient,
    publisher: Publisher,
    store: CursorStore,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Backfill each pair in turn; returns trades produced per pair."""
    counts: dict[str, int] = {}
    for pair in pairs:
        report = None if progress is None else (lambda ns, p=pair: progress(p, ns))
        counts[pair] = backfill_pair(pair, since_ns, until_ns, client, publisher, store, report)
    return counts


def client_from_settings(settings: IngestSettings) -> TradesClient:
    """The Kraken REST Trades client with the configured timeouts, pacing and backoff."""
    return TradesClient(
        settings.kraken_rest_url,
        timeout_s=settings.rest_timeout_s,
        min_interval_s=settings.rest_min_interval_s,
        max_retries=settings.rest_max_retries,
        page_size=settings.rest_page_size,
        backoff=Backoff(
            settings.backoff_initial_s, settings.backoff_max_s, jitter=settings.backoff_jitter
        ),
    )
