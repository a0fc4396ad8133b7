from cryptopred_core.records import Trade
from cryptopred_ingest.dedup import Dedup, LastSeen, repair_since_ns


def trade(pair, trade_id, ts_ms=1_767_225_600_000):
    return Trade(
        pair=pair, price=1.0, qty=1.0, side="buy", trade_id=trade_id, ts_ms=ts_ms, source="t"
    )


def test_admits_each_pair_and_id_once():
    dedup = Dedup()
    batch = [trade("BTC/USD", 1), trade("BTC/USD", 2), trade("ETH/USD", 1), trade("BTC/USD", 1)]
    assert [(t.pair, t.trade_id) for t in dedup.fresh(batch)] == [
        ("BTC/USD", 1),
        ("BTC/USD", 2),
        ("ETH/USD", 1),
    ]
    assert dedup.fresh([trade("ETH/USD", 1), trade("ETH/USD", 3)]) == [trade("ETH/USD", 3)]
    assert dedup.duplicates == 2


def test_last_seen_tracks_highest_id():
    dedup = Dedup()
    dedup.fresh([trade("BTC/USD", 5, 1_767_225_600_500), trade("BTC/USD", 3, 1_767_225_600_100)])
    assert dedup.last["BTC/USD"] == LastSeen(5, 1_767_225_600_500)


def test_capacity_bounds_memory():
    dedup = Dedup(capacity=3)
    dedup.fresh([trade("BTC/USD", i) for i in range(10)])
    assert dedup.admit(trade("BTC/USD", 9)) is False
    assert dedup.admit(trade("BTC/USD", 0)) is True  # forgotten


def test_ids_none_always_admitted():
    dedup = Dedup()
    t = Trade(
        pair="BTC/USD",
        price=1.0,
        qty=1.0,
        side="buy",
        trade_id=None,
        ts_ms=1_767_225_600_000,
        source="t",
    )
    assert dedup.admit(t) and dedup.admit(t)


def test_repair_since_is_just_before_last_trade():
    assert repair_since_ns(LastSeen(7, 1_767_225_600_123)) == 1_767_225_600_122_000_000
