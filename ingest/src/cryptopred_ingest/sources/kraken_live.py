"""The live Kraken source: WS v2 trades, reconnects, REST gap repair, source watermarks.

Kraken's trade ids are sequential per pair, so the feed repairs itself three ways: after each
(re)connect it fetches from REST every trade since the last one seen; a trade whose id jumps
past the last id + 1 first has exactly the missing ids fetched and published; and a message
after a silence longer than `silence_repair_s` first has every pair repaired since its last
trade. Watermarks (how far every pair is known complete) advance only after a flush.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tenacity
import websocket

from cryptopred_core.records import Trade
from cryptopred_ingest.dedup import Dedup, LastSeen, repair_since_ns
from cryptopred_ingest.publish import Publisher, now_ms
from cryptopred_ingest.reconnect import NETWORK_ERRORS, Backoff, Watchdog, run_with_reconnect
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.sources.kraken_rest import (
    RateLimitedError,
    RestUnavailableError,
    TradesClient,
)
from cryptopred_ingest.sources.kraken_ws import SOURCE, Kind, parse_message, subscribe_message
from cryptopred_ingest.sources.watermarks import Completeness, WatermarkWriter, watermark_rows

log = logging.getLogger(__name__)

RECV_SLICE_S = 0.5  # how often a blocked recv wakes to check the watchdog and stop flag
# a session ends and reconnects on these; anything else (a bug, a DeliveryError) ends the source
RECONNECT_ON = (*NETWORK_ERRORS, RateLimitedError, RestUnavailableError)


@dataclass
class LiveStats:
    connects: int = 0
    reconnects: int = 0
    gaps_repaired: int = 0
    gaps_unrepaired: int = 0
    id_jumps: int = 0
    silence_repairs: int = 0
    duplicates_dropped: int = 0
    messages: int = 0
    heartbeats: int = 0
    errors: int = 0


class KrakenLiveSource:
    """Follows `pairs` on Kraken WS v2 until `stop` is set; every trade is published once.

    `watermarks` (None: none) receives the pairs' source watermarks about once a second.
    """

    def __init__(
        self,
        settings: IngestSettings,
        publisher: Publisher,
        pairs: Sequence[str] | None = None,
        stop: threading.Event | None = None,
        connect: Callable[..., Any] = websocket.create_connection,
        state_path: Path | None = None,
        watermarks: WatermarkWriter | None = None,
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
        self.watermarks = watermarks
        self.completeness = Completeness(int(settings.silence_repair_s * 1000))
        self.written_ms: dict[str, int] = {}  # watermark written per pair
        self._watermark_s = time.monotonic()
        if state_path is not None and state_path.exists():
            saved = json.loads(state_path.read_text())
            self.dedup.last = {p: LastSeen(**v) for p, v in saved.items() if p in self.pairs}
            self._resumed = bool(self.dedup.last)
            log.info("kraken ws: resuming after %s", self.dedup.last)

    def run(self) -> None:
        """Block until `stop`; reconnect with backoff on network errors and silence. Anything
        else (a DeliveryError, a bug) propagates: the source ends, its watermarks stay put."""
        run_with_reconnect(
            self._session,
            self.backoff,
            self.stop,
            "kraken ws",
            self._on_reconnect,
            retry_on=RECONNECT_ON,
        )
        self.checkpoint()
        if self.watermarks is not None:
            self.watermarks.delete(SOURCE)

    def flush_watermarks(self) -> None:
        """Flush the producer, then advance the watermarks to what the flush made durable."""
        known_ms = self.completeness.known_ms  # before the flush: all of it is in the producer
        self.publisher.flush()
        self._watermark_s = time.monotonic()
        if self.watermarks is None or known_ms is None:
            return
        through_ms = known_ms - self.settings.watermark_lag_ms
        rows = watermark_rows(SOURCE, self.pairs, through_ms, self.written_ms, now_ms())
        if rows and self.watermarks.write(rows):
            self.written_ms.update((row.pair, row.through_ms) for row in rows)

    def checkpoint(self) -> None:
        """Flush the producer (and advance watermarks), then save the last trade seen per pair
        (for a restarted actor). Flushing first means a restart never skips a lost trade."""
        self.flush_watermarks()
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
        self.completeness.connected()
        try:
            ws.send(subscribe_message(self.pairs, self.settings.kraken_snapshot))
            watchdog = Watchdog(self.settings.watchdog_s)
            while not self.stop.is_set():
                try:
                    text = ws.recv()
                except websocket.WebSocketTimeoutException:
                    watchdog.check()
                    self._tick()
                    continue
                if not ws.connected:
                    raise ConnectionError("closed by the server")
                watchdog.feed()
                arrived_ms = now_ms()
                if self.completeness.needs_repair(arrived_ms):
                    self.stats.silence_repairs += 1
                    self._repair_gaps(dict(self.dedup.last), arrived_ms)
                is_ack = self._handle(text)
                if is_ack and not repaired:
                    started_ms = now_ms()
                    if self.stats.connects > 1 or self._resumed:  # a cold start has no gap
                        self._repair_gaps(cursor, started_ms)
                    self.completeness.repaired(started_ms)
                    self.backoff.reset()
                    repaired = True
                self.completeness.message(arrived_ms)
                self._tick()
        finally:
            ws.close()

    def _tick(self) -> None:
        """Watermarks about once per `watermark_interval_s`, the state file less often."""
        now_s = time.monotonic()
        if now_s - self._checkpoint_s >= self.settings.live_checkpoint_s:
            self.checkpoint()
        elif (
            self.watermarks is not None
            and now_s - self._watermark_s >= self.settings.watermark_interval_s
        ):
            self.flush_watermarks()

    def _handle(self, text: str | bytes) -> bool:
        """Handle one message; True when it was a subscribe ack."""
        self.stats.messages += 1
        parsed = parse_message(text, self.pairs)
        if parsed.kind is Kind.TRADES:
            for trade in parsed.trades:
                last = self.dedup.last.get(trade.pair)
                if last is not None and (trade.trade_id or 0) > last.trade_id + 1:
                    self._repair_ids(trade.pair, trade.trade_id or 0)
                if self.dedup.admit(trade):
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

    def _repair_gaps(self, cursor: dict[str, LastSeen], started_ms: int) -> None:
        """Fetch from REST every trade since the last one seen per pair (since the start for
        a pair not seen yet); then the feed is complete up to `started_ms`."""
        fallback_ms = self._started_ms or 0
        for pair in self.pairs:
            last = cursor.get(pair) or LastSeen(-1, fallback_ms)
            found = 0
            for page in self.rest.pages(pair, repair_since_ns(last)):
                newer = [t for t in page.trades if (t.trade_id or 0) > last.trade_id]
                found += self._publish_repaired(newer)
                for rej in page.rejects:
                    self.publisher.reject(rej.reason, rej.raw)
            log.info("kraken ws: gap repair of %s from REST: %d missed trades", pair, found)
        self.stats.duplicates_dropped = self.dedup.duplicates
        self.publisher.producer.poll(0)
        self.completeness.repaired(started_ms)

    def _publish_repaired(self, trades: list[Trade]) -> int:
        found = 0
        for trade in self.dedup.fresh(trades):
            self.publisher.trade(trade)
            found += 1
        self.stats.gaps_repaired += found
        return found

    def _wait(self, delay_s: float) -> None:
        self.stop.wait(delay_s)

    def _repair_ids(self, pair: str, next_id: int) -> None:
        """Fetch and publish the ids between the pair's last seen trade and `next_id` (a jump
        in the feed), before `next_id` itself; REST may lag the feed, so a few passes."""
        self.stats.id_jumps += 1
        first_missing = self.dedup.last[pair].trade_id + 1

        def missing() -> int:
            return max(0, next_id - 1 - self.dedup.last[pair].trade_id)

        def one_pass() -> int:
            last = self.dedup.last[pair]
            for page in self.rest.pages(pair, repair_since_ns(last)):
                self._publish_repaired(
                    [t for t in page.trades if last.trade_id < (t.trade_id or 0) < next_id]
                )
                for rej in page.rejects:
                    self.publisher.reject(rej.reason, rej.raw)
                if any((t.trade_id or 0) >= next_id - 1 for t in page.trades):
                    break
            return missing()

        # retried: ids REST does not serve yet (it may lag the feed a little)
        left = tenacity.Retrying(
            retry=tenacity.retry_if_result(lambda left: left > 0),
            stop=tenacity.stop_after_attempt(self.settings.gap_repair_attempts)
            | tenacity.stop_when_event_set(self.stop),
            wait=tenacity.wait_fixed(max(self.settings.rest_min_interval_s, 0.1)),
            sleep=self._wait,
            retry_error_callback=lambda state: missing(),
        )(one_pass)
        if left:
            self.stats.gaps_unrepaired += left
            log.warning(
                "kraken ws: %s ids %d..%d: %d trades not on REST after %d passes; going on",
                pair,
                first_missing,
                next_id - 1,
                left,
                self.settings.gap_repair_attempts,
            )
        self.stats.duplicates_dropped = self.dedup.duplicates
