import threading
import time

import pytest
from typer.testing import CliRunner

from cryptopred_core.kafka import ensure_topics, make_producer
from cryptopred_core.records import DeadLetter, Trade, decode, encode
from cryptopred_ingest.cli import app
from cryptopred_ingest.publish import Publisher
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.sources.kraken_live import KrakenLiveSource
from cryptopred_ingest.sources.synthetic import generate
from cryptopred_testsupport.fake_kraken import FakeKraken
from cryptopred_testsupport.readback import read_all

pytestmark = pytest.mark.integration

PAIRS = ["BTC/USD", "ETH/EUR", "SOL/USD"]


def test_live_reconnect_and_gap_repair_through_broker(broker, unique):
    trades_topic, dlq_topic = f"trades-{unique}", f"dlq-{unique}"
    ensure_topics(broker, [trades_topic, dlq_topic], partitions=2)
    fake = FakeKraken(
        PAIRS,
        tape_size=200,
        page_size=20,
        rate_limit_every=3,
        segments=[(0, 50, "close"), (80, 120, "close"), (150, 200, "idle")],
        extra_messages=["{not json", '{"channel":"ticker"}'],
    ).start()
    settings = IngestSettings(
        **broker.model_dump(exclude={"pairs"}),
        pairs=PAIRS,
        kraken_ws_url=fake.ws_url,
        kraken_rest_url=fake.rest_url,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        watchdog_s=2.0,
        rest_min_interval_s=0,
        rest_page_size=fake.page_size,
    )
    publisher = Publisher(make_producer(settings), "ingest-live", trades_topic, dlq_topic)
    source = KrakenLiveSource(settings, publisher)
    thread = threading.Thread(target=source.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and publisher.counts.trades < 600:
            time.sleep(0.05)
    finally:
        source.stop.set()
        thread.join(timeout=15)
        fake.stop()
    records = read_all(settings, trades_topic, expect=600)
    expected = [t.trade_id for t in fake.tape]
    for pair in PAIRS:
        ids = [decode(v, Trade).trade_id for k, v in records if k == pair.encode()]
        assert sorted(ids) == expected, pair
        assert len(ids) == len(set(ids)) == 200, pair
    assert source.stats.reconnects == 2 and source.stats.gaps_repaired == 3 * (30 + 30)
    letters = [decode(v, DeadLetter) for _, v in read_all(settings, dlq_topic, expect=2)]
    assert [d.raw for d in letters] == ["{not json", '{"channel":"ticker"}']
    assert all(d.stage == "ingest-live" for d in letters)


def test_kraken_csv_replay_cli_one_record_per_valid_row(broker, unique, tmp_path, monkeypatch):
    pair = f"T{unique[:6].upper()}/USD"
    good = [f"{1767225600 + i}.25,{100 + i % 7}.5,0.{i + 1}" for i in range(500)]
    bad = [
        f"1767226200,abc{unique},1",
        f"1767226201,-1,{unique}",
        f"1767226202,{unique}",
        f"5,1,1,{unique}",
        f"1767226203,nan,1{unique}",
    ]
    lines = good[:250] + bad + good[250:]
    path = tmp_path / "trades.csv"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("CRYPTOPRED_KAFKA_BOOTSTRAP", broker.bootstrap_servers)
    monkeypatch.setenv("CRYPTOPRED_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(
        app, ["replay", "--file", str(path), "--format", "kraken-csv", "--pair", pair]
    )
    assert result.exit_code == 0, result.output
    assert "500 trades, 5 rejects" in result.output
    trades = [decode(v, Trade) for k, v in read_all(broker, "trades") if k == pair.encode()]
    assert len(trades) == 500 and len({t.trade_id for t in trades}) == 500
    assert sorted(t.ts_ms for t in trades) == [(1767225600 + i) * 1000 + 250 for i in range(500)]
    letters = [decode(v, DeadLetter) for _, v in read_all(broker, "dlq")]
    mine = [d for d in letters if unique in d.raw]
    assert sorted(d.raw for d in mine) == sorted(bad)
    assert all(d.stage == "ingest-replay-kraken-csv" and d.reason for d in mine)


def test_backfill_cli_resumes_and_duplicates_nothing(broker, unique, tmp_path, monkeypatch):
    pair = f"B{unique[:6].upper()}/USD"
    fake = FakeKraken([pair], tape_size=130, page_size=20, rate_limit_every=4).start()
    monkeypatch.setenv("CRYPTOPRED_KAFKA_BOOTSTRAP", broker.bootstrap_servers)
    monkeypatch.setenv("CRYPTOPRED_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CRYPTOPRED_KRAKEN_REST_URL", fake.rest_url)
    monkeypatch.setenv("CRYPTOPRED_REST_MIN_INTERVAL_S", "0")
    monkeypatch.setenv("CRYPTOPRED_BACKOFF_INITIAL_S", "0.01")
    monkeypatch.setenv("CRYPTOPRED_REST_PAGE_SIZE", "20")
    half = fake.tape[70].ts_ns / 1e9
    args = ["backfill", "--pairs", pair, "--since", "2025-12-31T00:00Z"]
    try:
        runs = [
            CliRunner().invoke(app, [*args, "--until", f"{half:.6f}"]),
            CliRunner().invoke(app, args),
            CliRunner().invoke(app, args),
        ]
    finally:
        fake.stop()
    for result in runs:
        assert result.exit_code == 0, result.output
    assert f"'{pair}': 70" in runs[0].output and f"'{pair}': 60" in runs[1].output
    assert f"'{pair}': 0" in runs[2].output
    trades = [decode(v, Trade) for k, v in read_all(broker, "trades") if k == pair.encode()]
    assert sorted(t.trade_id for t in trades) == [t.trade_id for t in fake.tape]
    assert (tmp_path / "ingest" / "backfill" / f"{pair.replace('/', '-')}.json").exists()
    assert fake.rest_limited >= 2


def test_synthetic_cli_is_deterministic_on_the_topic(broker, unique, tmp_path, monkeypatch):
    pair = f"S{unique[:6].upper()}/EUR"
    monkeypatch.setenv("CRYPTOPRED_KAFKA_BOOTSTRAP", broker.bootstrap_servers)
    monkeypatch.setenv("CRYPTOPRED_DATA_DIR", str(tmp_path))
    args = ["synthetic", "--pairs", pair, "--days", "0.02", "--seed", "9"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    got = [v for k, v in read_all(broker, "trades") if k == pair.encode()]
    expected = [encode(t) for b in generate([pair], 0.02, 9) for t in b.trades]
    assert got == expected and len(got) > 100
