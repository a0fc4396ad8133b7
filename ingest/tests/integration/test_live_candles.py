"""The live path end to end against the fake Kraken: the feed goes silent, the client reconnects
while it is still silent, the feed resumes (and later drops a stretch of WS trades); the candle
stage runs meanwhile, closing idle windows on the wall clock but held by the source's
watermarks, so every repaired trade lands in its candle: the final candles equal those built
from the whole tape and nothing goes to `dlq`."""

import threading
import time

import pytest

from cryptopred.stack.parts import Broker
from cryptopred_core import topics
from cryptopred_core.kafka import ensure_topics
from cryptopred_core.pipeline.runner import StageRunner
from cryptopred_core.pipeline.writer import DbWriter
from cryptopred_core.ports import free_port
from cryptopred_core.records import Candle, Trade, decode
from cryptopred_ingest.publish import make_publisher
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.sources.kraken_live import KrakenLiveSource
from cryptopred_ingest.sources.watermarks import DbWatermarkWriter
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_ingest.stream.stages import build_stage, group_id
from cryptopred_ingest.windows import CandleBuilder
from cryptopred_testsupport.fake_kraken import FakeKraken
from cryptopred_testsupport.readback import read_until_quiet

pytestmark = pytest.mark.integration

PAIRS = ["BTC/USD", "ETH/EUR"]
TAPE = 300
STEP_MS = 100  # played in real time: 5 trades every 0.5 s
WIDTH_S = 10
GRACE_MS = 1000
SILENT_FROM = 120  # the first connection goes silent after this index (12 s)
WATCHDOG_S = 3.0
RESUME_AT = 180  # the second one, silent 2.5 s after its ack, resumes here: an id jump
# The second connection's ack (about 15 s after the start) repairs what REST has by then,
# trades up to ~16.2 s of tape time; the ones after come only with the id jump at ~17.6 s
# (trade 180 is dated ~0.8 s before it is sent, as live trades are).
# A window boundary at 17.05 s puts some of them in a window that idle closing, without the
# source's hold, would finalise at ~17 s: before their repair.
BOUNDARY_AFTER_START_MS = 17_050


@pytest.fixture
def private_broker(postgres, tmp_path):
    base = postgres.model_copy(
        update={"data_dir": tmp_path, "broker_port": free_port(), "kafka_bootstrap": None}
    )
    part = Broker(base)
    part.start()
    try:
        yield base.model_copy(update={"kafka_bootstrap": part.address})
    finally:
        part.stop()


def aligned_base_ns(lag_ms: int = 1000) -> int:
    """A tape start `lag_ms` in the past whose boundary falls BOUNDARY_AFTER_START_MS later;
    sleeps until such a start exists (at most one window)."""
    width_ms = WIDTH_S * 1000
    while True:
        start_ms = time.time_ns() // 1_000_000 - lag_ms
        if (start_ms + BOUNDARY_AFTER_START_MS) % width_ms < 50:
            return (start_ms - (start_ms + BOUNDARY_AFTER_START_MS) % width_ms) * 1_000_000
        time.sleep(0.01)


def reference(fake: FakeKraken) -> dict[tuple[str, int], tuple[float, ...]]:
    builder = CandleBuilder([WIDTH_S], GRACE_MS, 10**9)
    for pair in PAIRS:
        for t in fake.tape:
            trade = Trade(
                pair=pair,
                price=t.price,
                qty=t.qty,
                side=t.side,  # type: ignore[arg-type]
                trade_id=t.trade_id,
                ts_ms=t.ts_ns // 1_000_000,
                source="ref",
            )
            builder.add(trade)
    builder.finish()
    return {key: value for key, value in _finals(builder.drain().candles).items()}


def _finals(candles: list[Candle]) -> dict[tuple[str, int], tuple[float, ...]]:
    return {
        (c.pair, c.window_start_ms): (c.open, c.high, c.low, c.close, c.volume, c.n_trades)
        for c in candles
        if c.final
    }


def test_a_stall_through_a_reconnect_leaves_the_candles_exact(private_broker, unique):
    ensure_topics(private_broker, topics.ALL_TOPICS, partitions=2)
    stream = StreamSettings(
        **private_broker.model_dump(exclude={"candle_seconds", "grace_ms"}),
        candle_seconds=[WIDTH_S],
        grace_ms=GRACE_MS,
        group_prefix=f"live-{unique}",
    )
    stop = threading.Event()
    runner = StageRunner(
        stream,
        build_stage("candles", stream),
        group_id(stream, "candles"),
        writer=DbWriter(stream.db_url, stream.db_dialect),
        tick_interval_ms=50,
    )
    candle_thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    candle_thread.start()
    time.sleep(8)  # the consumer joins its group
    fake = FakeKraken(
        PAIRS,
        tape_size=TAPE,
        step_ms=STEP_MS,
        batch=5,
        send_interval_s=0.5,
        page_size=50,
        rate_limit_every=4,
        base_ts_ns=aligned_base_ns(),
        segments=[(0, SILENT_FROM, "silence"), (RESUME_AT, TAPE, "idle", 2.5)],
        ws_drop=(200, 230),
        rest_by_time=True,
    ).start()
    ingest = IngestSettings(
        **private_broker.model_dump(exclude={"pairs"}),
        pairs=PAIRS,
        kraken_ws_url=fake.ws_url,
        kraken_rest_url=fake.rest_url,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        watchdog_s=WATCHDOG_S,
        rest_min_interval_s=0,
        rest_page_size=fake.page_size,
        watermark_interval_s=0.2,
        watermark_lag_ms=200,
    )
    publisher = make_publisher(ingest, "ingest-live")
    source = KrakenLiveSource(
        ingest, publisher, watermarks=DbWatermarkWriter(ingest.db_url, ingest.db_dialect)
    )
    source_thread = threading.Thread(target=source.run, daemon=True)
    source_thread.start()
    want = reference(fake)
    got: dict[tuple[str, int], tuple[float, ...]] = {}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not want.keys() <= got.keys():
            time.sleep(1)
            got = {}
            for msg in read_until_quiet(private_broker, topics.CANDLES, quiet_s=0.5):
                got.update(_finals([decode(msg.value(), Candle)]))
    finally:
        source.stop.set()
        source_thread.join(timeout=15)
        fake.stop()
        stop.set()
        candle_thread.join(timeout=30)
    assert fake.connections >= 2 and source.stats.id_jumps >= 1
    letters = read_until_quiet(private_broker, topics.DLQ, quiet_s=1.0)
    assert [m.value()[:200] for m in letters] == []  # no repaired trade came too late
    assert {k: got.get(k) for k in want} == want
