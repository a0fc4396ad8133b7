"""The candle stage's saved resume point across broker restarts (real tansu and PostgreSQL).

The embedded broker keeps topics in memory: after a restart `trades` begins again at offset 0
while `stream_checkpoints` still holds the old offset. The stage must then read the new topic
from its start, whether it now holds fewer records than that offset or more.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
import pytest

from cryptopred.stack.parts import Broker
from cryptopred_core import topics
from cryptopred_core.kafka import ensure_topics, make_producer
from cryptopred_core.pipeline.resume import CLOCK_SKEW_MS
from cryptopred_core.pipeline.runner import StageRunner
from cryptopred_core.pipeline.writer import DbWriter
from cryptopred_core.ports import free_port
from cryptopred_core.records import Candle, Trade, decode, encode
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_ingest.stream.stages import build_stage, group_id
from cryptopred_testsupport.readback import read_until_quiet
from cryptopred_testsupport.streams import closing_trade, make_trades, wait_for

pytestmark = pytest.mark.integration


@contextmanager
def fresh_broker(postgres, tmp_path, prefix) -> Iterator[StreamSettings]:
    """A new in-memory broker (empty topics) and stream settings that use it."""
    settings = postgres.model_copy(
        update={"data_dir": tmp_path, "broker_port": free_port(), "kafka_bootstrap": None}
    )
    part = Broker(settings)
    part.start()
    try:
        stream = StreamSettings(
            **{
                **postgres.model_dump(),
                "kafka_bootstrap": part.address,
                "candle_seconds": [60],
                "grace_ms": 5000,
                "group_prefix": prefix,
            }
        )
        ensure_topics(stream, [topics.TRADES, topics.CANDLES, topics.DLQ], partitions=1)
        yield stream
    finally:
        part.stop()


def produce(settings: StreamSettings, trades: list[Trade]) -> None:
    producer = make_producer(settings)
    for trade in trades:
        producer.produce(topics.TRADES, key=trade.pair.encode(), value=encode(trade))
    assert producer.flush(30) == 0


def run_candles(settings: StreamSettings, expected: int) -> StageRunner:
    """A candle-stage runner that has consumed `expected` records and then stays quiet."""
    runner = StageRunner(
        settings,
        build_stage("candles", settings),
        group_id(settings, "candles"),
        writer=DbWriter(settings.db_url, settings.db_dialect),
    )
    try:
        wait_for(lambda: runner.stats.consumed >= expected, timeout_s=90, step=runner.step)
        quiet_until = time.monotonic() + 2
        while time.monotonic() < quiet_until:  # nothing read twice, nothing more arrives
            runner.step()
        assert runner.stats.consumed == expected
    finally:
        runner.close()
    return runner


def first_candle_ms(settings: StreamSettings, pair: str) -> int:
    """The earliest window the candle stage emitted for `pair` on this broker."""
    candles = [decode(m.value(), Candle) for m in read_until_quiet(settings, topics.CANDLES)]
    return min(c.window_start_ms for c in candles if c.pair == pair)


def test_a_recreated_topic_is_read_from_its_start(postgres, tmp_path, unique):
    prefix = f"resume-{unique}"
    first = make_trades(f"RA{unique[:4].upper()}/USD", 1, 2, 30_000.0)
    with fresh_broker(postgres, tmp_path / "a", prefix) as settings:
        produce(settings, [*first, closing_trade(first)])
        assert run_candles(settings, len(first) + 1).stats.stale_resume_points == 0
        # same topic, a later start: the saved point is used (the open window's trade again)
        later = closing_trade(first)
        more = [
            msgspec.structs.replace(later, trade_id=10**8 + i, ts_ms=later.ts_ms + 1000 * i)
            for i in range(1, 6)
        ]
        produce(settings, more)
        assert run_candles(settings, 1 + len(more)).stats.stale_resume_points == 0

    # restarted broker, fewer records than the saved offset: without the check it waits forever
    fewer = make_trades(f"RB{unique[:4].upper()}/USD", 2, 0.5, 2_000.0)
    assert len(fewer) + 1 < len(first)
    with fresh_broker(postgres, tmp_path / "b", prefix) as settings:
        produce(settings, [*fewer, closing_trade(fewer)])
        assert run_candles(settings, len(fewer) + 1).stats.stale_resume_points == 1
        start = fewer[0].ts_ms - fewer[0].ts_ms % 60_000
        assert first_candle_ms(settings, fewer[0].pair) == start

    # restarted again, now more records than the saved offset: without the check it would skip
    # the topic's beginning (its records are newer than the saved point)
    time.sleep(CLOCK_SKEW_MS / 1000 + 1)
    bigger = make_trades(f"RC{unique[:4].upper()}/USD", 3, 1, 100.0)
    assert len(bigger) > len(fewer) + 1
    with fresh_broker(postgres, tmp_path / "c", prefix) as settings:
        produce(settings, [*bigger, closing_trade(bigger)])
        assert run_candles(settings, len(bigger) + 1).stats.stale_resume_points == 1
        start = bigger[0].ts_ms - bigger[0].ts_ms % 60_000
        assert first_candle_ms(settings, bigger[0].pair) == start
