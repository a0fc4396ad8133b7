"""The live Kraken source: WS v2 trades, reconnects, and REST gap repair after each reconnect."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import websocket

from cryptopred_ingest.dedup import Dedup, LastSeen, repair_since_ns
from cryptopred_ingest.publish import Publisher
from cryptopred_ingest.reconnect import Backoff, Watchdog, run_with_reconnect
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.sources.kraken_rest import TradesClient
from cryptopred_ingest.sources.kraken_ws import Kind, parse_message, subscribe_message

log = logging.getLogger(__name__)

RECV_SLICE_S = 0.5  # how often a blocked recv wakes to check the watchdog and stop flag


@dataclass
class LiveStats:
    connects: int = 0
    reconnects: int = 0
    gaps_repaired: int = 0
    duplicates_dropped: int = 0
    messages: int = 0
    heartbeats: int = 0
    errors: int = 0


class KrakenLiveSource:
    """Follows `pairs` on Kraken WS v2 until `stop` is set; every trade is published once."""

    def __init__(
        self,
        settings: IngestSettings,
        publisher: Publisher,
        pairs: Sequence[str] | None = None,
        stop: threading.Event | None = None,
        connect: Callable[..., Any] = websocket.create_connection,
        state_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.pairs = list(pairs or settings.pairs)
        self.stop = stop or threading.Event()
        self._connect = connect
        self.backoff = Backoff(
            settings.backoff_initial_s, settings.backoff_max_s, jitter=settings.backoff_jitter
        )
        self.rest = TradesClient(
            settings.kraken_rest_url,
            timeout_s=settings.rest_timeout_s,
            min_interval_s=settings.rest_min_interval_s,
            max_retries=settings.rest_max_retries,
            page_size=settings.rest_page_size,
            backoff=Backoff(settings.backoff_initial_s, settings.backoff_max_s),
            stop=self.stop,
        )
        self.dedup = Dedup()
        self.stats = LiveStats()
        self._started_ms: int | None = None
        self.state_path = state_path
        self._resumed = False
        self._checkpoint_s = time.monotonic()
        if state_path is not None and state_path.exists():
            saved = json.loads(state_path.read_text())
            self.dedup.last = {p: LastSeen(**v) for p, v in saved.items() if p in self.pairs}
            self._resumed = bool(self.dedup.last)
            log.info("kraken ws: resuming after %s", self.dedup.last)

    def run(self) -> None:
        """Block until `stop`; reconnect with backoff on any failure or silence."""
        run_with_reconnect(self._session, self.backoff, self.stop, "kraken ws", self._on_reconnect)
        self.checkpoint()

    def checkpoint(self) -> None:
        """Flush the producer, then save the last trade seen per pair (for a restarted actor).

        Flushing first means a restart never skips a trade that was not delivered.
        """
        self.publisher.flush()
        self._checkpoint_s = time.monotonic()
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({p: asdict(v) for p, v in self.dedup.last.items()}))
        tmp.replace(self.state_path)

    def _on_reconnect(self) -> None:
        self.stats.reconnects += 1

    def _session(self) -> None:
        url = self.settings.kraken_ws_url
        log.info("kraken ws: connecting to %s", url)
        ws = self._connect(url, timeout=min(RECV_SLICE_S, self.settings.watchdog_s))
        self.stats.connects += 1
        if self._started_ms is None:
            self._started_ms = time.time_ns() // 1_000_000
        repaired = False
        cursor = dict(self.dedup.last)  # the gap starts here, whatever arrives before the ack
        try:
            ws.send(subscribe_message(self.pairs, self.settings.kraken_snapshot))
            watchdog = Watchdog(self.settings.watchdog_s)
            while not self.stop.is_set():
                try:
                    text = ws.recv()
                except websocket.WebSocketTimeoutException:
                    watchdog.check()
                    continue
                if not ws.connected:
                    raise ConnectionError("closed by the server")
                watchdog.feed()
                is_ack = self._handle(text)
                if is_ack and not repaired:
                    self._repair_gaps(cursor)
                    self.backoff.reset()
                    repaired = True
                if time.monotonic() - self._checkpoint_s >= self.settings.live_checkpoint_s:
                    self.checkpoint()
        finally:
            ws.close()

    def _handle(self, text: str | bytes) -> bool:
        """Handle one message; True when it was a subscribe ack."""
        self.stats.messages += 1
        parsed = parse_message(text, self.pairs)
        if parsed.kind is Kind.TRADES:
            for trade in self.dedup.fresh(parsed.trades):
                self.publisher.trade(trade)
            self.publisher.producer.poll(0)
        elif parsed.kind is Kind.HEARTBEAT:
            self.stats.heartbeats += 1
        elif parsed.kind is Kind.ERROR:
            self.stats.errors += 1
            raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
            self.publisher.reject(f"exchange error: {parsed.detail}", raw)
        elif parsed.kind is Kind.STATUS:
            log.info("kraken ws: status %s", parsed.detail)
        for rej in parsed.rejects:
            self.publisher.reject(rej.reason, rej.raw)
        self.stats.duplicates_dropped = self.dedup.duplicates
        return parsed.kind is Kind.ACK

    def _repair_gaps(self, cursor: dict[str, LastSeen]) -> None:
        """Fetch from REST every trade since the last one seen per pair (not on a cold start)."""
        if self.stats.connects <= 1 and not self._resumed:
            return
        fallback_ms = self._started_ms or 0
        for pair in self.pairs:
            last = cursor.get(pair) or LastSeen(-1, fallback_ms)
            found = 0
            for page in self.rest.pages(pair, repair_since_ns(last)):
                newer = [t for t in page.trades if (t.trade_id or 0) > last.trade_id]
                for trade in self.dedup.fresh(newer):
                    self.publisher.trade(trade)
                    found += 1
                for rej in page.rejects:
                    self.publisher.reject(rej.reason, rej.raw)
            self.stats.gaps_repaired += found
            log.info("kraken ws: gap repair of %s from REST: %d missed trades", pair, found)
        self.stats.duplicates_dropped = self.dedup.duplicates
        self.publisher.producer.poll(0)
