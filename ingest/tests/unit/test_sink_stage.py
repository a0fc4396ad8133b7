"""The sink stage's routing without a broker: rows out, offsets, dead letters, skipped finals."""

from cryptopred_core import tables, topics
from cryptopred_core.pipeline.stage import Emit, Inbound
from cryptopred_core.records import Candle, IndicatorRow, encode, to_dict
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_ingest.stream.sink import SinkStage
from cryptopred_ingest.stream.stages import build_stage

START_MS = 1_700_000_040_000


def candle(i: int, final: bool) -> Candle:
    return Candle(
        pair="SNK/USD",
        candle_seconds=60,
        window_start_ms=START_MS + i * 60_000,
        window_end_ms=START_MS + (i + 1) * 60_000,
        open=1.0,
        high=2.0,
        low=0.5,
        close=1.5,
        volume=3.0,
        vwap=1.2,
        n_trades=4,
        final=final,
    )


def message(topic: str, offset: int, value: bytes) -> Inbound:
    return Inbound(topic, 1, offset, b"SNK/USD", value, START_MS)


def test_finals_written_upstream_are_checked_and_passed_not_written_again() -> None:
    rows = [IndicatorRow(**to_dict(candle(i, final=i % 2 == 0)), sma_7=1.0) for i in range(4)]
    batch = [message(topics.TECHNICAL_INDICATORS, i, encode(r)) for i, r in enumerate(rows)]
    batch += [message(topics.CANDLES, 10 + i, encode(candle(i, final=True))) for i in range(2)]
    batch.append(message(topics.TECHNICAL_INDICATORS, 4, b'{"pair":"SNK/USD"}'))
    stage = SinkStage(upstream_finals=[topics.TECHNICAL_INDICATORS])
    out = Emit()
    assert stage.handle_batch(batch, START_MS, out) == len(batch)
    assert out.rows[tables.TECHNICAL_INDICATORS] == [rows[1], rows[3]]  # the open ones
    assert out.rows[tables.CANDLES] == [candle(0, True), candle(1, True)]
    assert [d.reason.split(":")[0] for d in out.dead] == [topics.TECHNICAL_INDICATORS]
    assert stage.safe_offsets() == {
        (topics.TECHNICAL_INDICATORS, 1): 5,  # skipped and poison records are passed too
        (topics.CANDLES, 1): 12,
    }
    everything = Emit()
    SinkStage().handle_batch(batch, START_MS, everything)
    assert everything.rows[tables.TECHNICAL_INDICATORS] == rows


def test_the_built_sink_leaves_indicator_finals_to_the_indicator_stage_on_postgres_only() -> None:
    pg = build_stage("sink", StreamSettings(db_dialect="postgres"))
    rw = build_stage("sink", StreamSettings(db_dialect="risingwave"))
    assert isinstance(pg, SinkStage) and isinstance(rw, SinkStage)
    assert pg.upstream_finals == {topics.TECHNICAL_INDICATORS}
    assert rw.upstream_finals == frozenset()
