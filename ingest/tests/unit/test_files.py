import json

import numpy as np

from cryptopred_core.records import Trade, encode
from cryptopred_ingest.sources.ids import TickIds
from cryptopred_ingest.sources.jsonl import JsonlTrades
from cryptopred_ingest.sources.kraken_csv import CsvTrades

GOOD = [
    "1767225600.1234,95000.5,0.01",
    "1767225600.1234,95001.0,0.02",
    "1767225601.5,95000.0,0.5",
    "1767225601.5,95000.0,0.25",
]
BAD = {
    "1767225602,abc,1": "price",
    "1767225602,-5,1": "price",
    "1767225602,nan,1": "price",
    "1767225602,100,inf": "qty",
    "1767225602,100,0": "qty",
    "99,100,1": "ts_ms",
    "1767225602,100": "csv: expected 3 columns",
    "garbage": "csv: expected 3 columns",
}


def write(tmp_path, lines, name="t.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def collect(source):
    trades, rejects = [], []
    for batch in source.batches():
        trades += batch.trades
        rejects += batch.rejects
    return trades, rejects


def test_csv_one_trade_per_valid_row_bad_rows_with_reasons(tmp_path):
    lines = GOOD[:2] + list(BAD) + GOOD[2:] + [""]
    trades, rejects = collect(CsvTrades(write(tmp_path, lines), "BTC/USD"))
    assert len(trades) == 4 and len(rejects) == len(BAD)
    assert [t.price for t in trades] == [95000.5, 95001.0, 95000.0, 95000.0]
    assert [t.ts_ms for t in trades] == [1767225600123, 1767225600123, 1767225601500, 1767225601500]
    assert all(t.pair == "BTC/USD" and t.source == "kraken-csv" for t in trades)
    for rej in rejects:
        assert rej.reason.startswith(BAD[rej.raw]), (rej.raw, rej.reason)
    ids = [t.trade_id for t in trades]
    assert ids == [17672256001234000, 17672256001234001, 17672256015000000, 17672256015000001]
    # tick rule: first trade buys, uptick buys, downtick sells, unchanged repeats
    assert [t.side for t in trades] == ["buy", "buy", "sell", "sell"]


def test_csv_chunking_does_not_change_output(tmp_path):
    later = [line.replace("17672256", "17672257") for line in GOOD]
    path = write(tmp_path, GOOD + later)
    whole, _ = collect(CsvTrades(path, "XRP/EUR", chunk_rows=1000))
    chunked, _ = collect(CsvTrades(path, "XRP/EUR", chunk_rows=1))
    assert [encode(t) for t in whole] == [encode(t) for t in chunked]
    assert len({t.trade_id for t in whole}) == len(whole)


def test_tick_ids_carry_rank_across_chunks():
    ids = TickIds()
    first = ids.assign(np.array([5, 5, 6], dtype=np.int64))
    second = ids.assign(np.array([6, 6, 7], dtype=np.int64))
    assert first.tolist() == [5000, 5001, 6000]
    assert second.tolist() == [6001, 6002, 7000]


def test_jsonl_records_and_rejects(tmp_path):
    ok = Trade(
        pair="SOL/USD",
        price=190.0,
        qty=1.0,
        side="buy",
        trade_id=7,
        ts_ms=1767225600000,
        source="x",
    )
    no_id = json.loads(encode(ok))
    no_id["trade_id"] = None
    lines = [
        encode(ok).decode(),
        json.dumps(no_id),
        json.dumps(no_id),
        "{broken",
        json.dumps({**no_id, "price": -1}),
        json.dumps({**no_id, "pair": "ETH/USD"}),
    ]
    path = write(tmp_path, lines, "t.jsonl")
    trades, rejects = collect(JsonlTrades(path, pair="SOL/USD"))
    assert trades[0] == ok
    assert [t.trade_id for t in trades[1:]] == [17672256000000000, 17672256000000001]
    reasons = [r.reason for r in rejects]
    assert reasons[0].startswith("malformed JSON") and reasons[1].startswith("price")
    assert reasons[2] == "pair: ETH/USD is not SOL/USD"
    assert [r.raw for r in rejects] == lines[3:]


def test_columnar_fast_path_is_byte_identical_to_records(tmp_path):
    rng = np.random.default_rng(3)
    prices, qtys = rng.lognormal(0, 6, 300).tolist(), rng.lognormal(-8, 4, 300).tolist()
    lines = [f"{1767225600 + i * 0.37:.4f},{prices[i]!r},{qtys[i]!r}" for i in range(300)]
    lines[100] = "1767225700.0,100,1,extra"
    lines[200] = "1767225800.0,nan,1"
    path = write(tmp_path, lines)
    trades, rejects = collect(CsvTrades(path, "ABC/XYZ", chunk_rows=128))
    encoded, crejects = [], []
    for batch in CsvTrades(path, "ABC/XYZ", chunk_rows=128, columnar=True).batches():
        assert not batch.trades
        encoded += batch.encoded
        crejects += batch.rejects
    assert encoded == [encode(t) for t in trades] and len(encoded) == 298
    assert rejects == crejects and [r.raw for r in rejects] == [lines[100], lines[200]]
