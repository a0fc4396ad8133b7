"""A stage's one decode path and its default batch handling, without a broker."""

from cryptopred_core.pipeline.stage import Emit, Inbound, Stage
from cryptopred_core.records import Candle, encode

NOW_MS = 1_700_000_100_000
GOOD = Candle(
    pair="BTC/USD",
    candle_seconds=60,
    window_start_ms=1_700_000_040_000,
    window_end_ms=1_700_000_100_000,
    open=1.0,
    high=2.0,
    low=0.5,
    close=1.5,
    volume=3.0,
    vwap=1.2,
    n_trades=4,
    final=True,
)


class Reader(Stage):
    """Keeps the candles it decodes, in order."""

    name = "reader"
    topics = ("in",)

    def __init__(self) -> None:
        self.read: list[Candle] = []
        self.offsets: list[int] = []

    def handle(self, message: Inbound, now_ms: int, out: Emit) -> None:
        self.offsets.append(message.offset)
        candle = self.decode_or_dead_letter(message, Candle, now_ms, out, "in: ")
        if candle is not None:
            self.read.append(candle)

    def safe_offsets(self) -> dict[tuple[str, int], int]:
        return {}


def record(offset: int, value: bytes) -> Inbound:
    return Inbound("in", 2, offset, b"BTC/USD", value, NOW_MS)


def test_a_good_record_is_decoded_and_nothing_is_dead_lettered() -> None:
    stage, out = Reader(), Emit()
    stage.handle(record(5, encode(GOOD)), NOW_MS, out)
    assert stage.read == [GOOD]
    assert out.dead == []


def test_a_poison_record_goes_to_the_dlq_with_its_reason_and_place() -> None:
    stage, out = Reader(), Emit()
    stage.handle(record(6, b'{"pair":"BTC/USD"}'), NOW_MS, out)
    assert stage.read == []
    [letter] = out.dead
    assert letter.stage == "reader"
    assert letter.reason.startswith("in: ") and "candle_seconds" in letter.reason
    assert (letter.topic, letter.partition, letter.offset) == ("in", 2, 6)
    assert letter.raw == '{"pair":"BTC/USD"}'
    assert letter.ts_ms == NOW_MS


def test_a_batch_is_handled_in_order_through_the_same_path() -> None:
    stage, out = Reader(), Emit()
    batch = [record(0, encode(GOOD)), record(1, b"not json"), record(2, encode(GOOD))]
    assert stage.handle_batch(batch, NOW_MS, out) == 3
    assert stage.offsets == [0, 1, 2]
    assert stage.read == [GOOD, GOOD]
    assert [d.offset for d in out.dead] == [1]
    assert out.dead[0].reason.startswith("in: malformed JSON")
