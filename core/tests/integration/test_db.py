"""Upserts into the real embedded PostgreSQL are idempotent."""

import pytest

from cryptopred_core.db import connect, create_schema, fetch_all, upsert
from cryptopred_core.db.rows import StreamCheckpoint
from cryptopred_core.records import Candle, IndicatorRow, to_dict

pytestmark = pytest.mark.integration


def candles(close_shift=0.0):
    start = 1_700_000_040_000
    return [
        Candle(
            pair="BTC/USD",
            candle_seconds=60,
            window_start_ms=start + i * 60_000,
            window_end_ms=start + (i + 1) * 60_000,
            open=100.0,
            high=110.0 + close_shift,
            low=90.0,
            close=105.0 + close_shift,
            volume=2.0,
            vwap=101.0,
            n_trades=3,
            final=True,
        )
        for i in range(50)
    ]


def test_upserting_the_same_rows_twice_leaves_one_row_each(postgres):
    with connect(postgres.db_url) as conn:
        create_schema(conn, "postgres")  # idempotent on an existing schema
        conn.execute("DELETE FROM candles WHERE pair = %s", ("BTC/USD",))
        conn.commit()
        assert upsert(conn, "candles", candles(), "postgres") == 50
        assert upsert(conn, "candles", candles(), "postgres") == 50
        rows = fetch_all(conn, "SELECT count(*) AS n FROM candles WHERE pair = %s", ("BTC/USD",))
        assert rows[0]["n"] == 50

        # a repeated key overwrites: the latest values win
        upsert(conn, "candles", candles(close_shift=1.0), "postgres")
        rows = fetch_all(
            conn,
            "SELECT count(*) AS n, min(close) AS lo, max(close) AS hi FROM candles WHERE pair = %s",
            ("BTC/USD",),
        )
        assert rows[0] == {"n": 50, "lo": 106.0, "hi": 106.0}

        # duplicates inside one batch are folded too
        batch = candles() + candles(close_shift=2.0)
        upsert(conn, "candles", batch, "postgres")
        rows = fetch_all(
            conn,
            "SELECT count(*) AS n, max(close) AS hi FROM candles WHERE pair = %s",
            ("BTC/USD",),
        )
        assert rows[0]["n"] == 50 and rows[0]["hi"] == 107.0


def test_values_are_parameters_not_sql(postgres):
    evil = {"pair": "X'); DROP TABLE candles; --"}
    with connect(postgres.db_url) as conn:
        rows = fetch_all(conn, "SELECT count(*) AS n FROM candles WHERE pair = %s", (evil["pair"],))
        assert rows[0]["n"] == 0
        assert fetch_all(conn, "SELECT to_regclass('candles') IS NOT NULL AS ok")[0]["ok"]


def test_batched_struct_rows_read_back_exactly(postgres):
    """Struct rows travel as one JSON batch: floats, nulls, booleans and text come back as sent."""
    start = 1_700_000_040_000
    awkward = [0.1 + 0.2, 1e-300, 5e-324, 1.7976931348623157e308, 123456789.12345679, 2.0 / 3]
    rows = [
        IndicatorRow(
            pair="EXA/USD",
            candle_seconds=60,
            window_start_ms=start + i * 60_000,
            window_end_ms=start + (i + 1) * 60_000,
            open=x,
            high=x,
            low=x,
            close=x,
            volume=x,  # a window with trades has volume
            vwap=x,
            n_trades=2**40 + i,
            final=i % 2 == 0,
            sma_7=None if i % 3 else -x,
            obv=-x,
        )
        for i, x in enumerate(awkward)
    ]
    state = '{"pairs":{"É/€":[1,"a\\"b\\\\c\\n\\t"]}}'
    checkpoint = StreamCheckpoint(
        group_id="g'; --", topic="trades", partition=1, offset=42, state=state, updated_ms=7
    )
    with connect(postgres.db_url) as conn:
        create_schema(conn, "postgres")
        conn.execute("DELETE FROM technical_indicators WHERE pair = 'EXA/USD'")
        assert upsert(conn, "technical_indicators", rows, "postgres") == len(rows)
        got = fetch_all(
            conn,
            "SELECT * FROM technical_indicators WHERE pair = 'EXA/USD' ORDER BY window_start_ms",
        )
        assert [IndicatorRow(**r) for r in got] == rows
        upsert(conn, "stream_checkpoints", [checkpoint], "postgres")
        back = fetch_all(conn, "SELECT * FROM stream_checkpoints WHERE group_id = %s", ("g'; --",))
        assert [StreamCheckpoint(**r) for r in back] == [checkpoint]


@pytest.mark.parametrize("as_mapping", [False, True])
def test_an_open_row_never_replaces_a_final_one(postgres, as_mapping):
    def row(close, final):
        c = candles(close_shift=close)[0]
        c = Candle(**{**to_dict(c), "pair": "FIN/USD", "final": final})
        return to_dict(c) if as_mapping else c

    def stored():
        rows = fetch_all(conn, "SELECT close, final FROM candles WHERE pair = 'FIN/USD'")
        return [(r["close"], r["final"]) for r in rows]

    with connect(postgres.db_url) as conn:
        create_schema(conn, "postgres")
        conn.execute("DELETE FROM candles WHERE pair = 'FIN/USD'")
        upsert(conn, "candles", [row(0.0, False)], "postgres")
        upsert(conn, "candles", [row(1.0, False)], "postgres")  # open over open: replaced
        assert stored() == [(106.0, False)]
        upsert(conn, "candles", [row(2.0, True)], "postgres")  # final over open: replaced
        upsert(conn, "candles", [row(3.0, False)], "postgres")  # a late open: ignored
        assert stored() == [(107.0, True)]
        upsert(conn, "candles", [row(2.0, True)], "postgres")  # a replayed final: same row
        assert stored() == [(107.0, True)]


def test_create_schema_adds_the_outcome_columns_an_older_table_lacks(postgres):
    """An outcomes table without the pinball loss columns gets them as NULL columns."""
    from cryptopred_core.db.access import ddl
    from cryptopred_core.db.schema import TABLES, Table

    current = TABLES["prediction_outcomes"]
    new = {"pinball_loss", "baseline_pinball_loss", "baseline_version"}
    older = Table(
        current.name, tuple(c for c in current.columns if c.name not in new), current.primary_key
    )
    with connect(postgres.db_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA older_contract")
        try:
            conn.execute("SET search_path TO older_contract")
            conn.execute(ddl(older, "postgres"))
            conn.execute(
                "INSERT INTO prediction_outcomes VALUES ('BTC/USD', 60, 60, 1, 'm', '1', 2, "
                "1.0, 1.0, 1.0, 0.0, 0.0, true, true, 3)"
            )
            create_schema(conn, "postgres")
            create_schema(conn, "postgres")  # nothing left to add
            rows = fetch_all(
                conn,
                "SELECT pinball_loss, baseline_pinball_loss, baseline_version, pair "
                "FROM prediction_outcomes",
            )
            assert rows == [
                {
                    "pinball_loss": None,
                    "baseline_pinball_loss": None,
                    "baseline_version": None,
                    "pair": "BTC/USD",
                }
            ]
        finally:
            conn.execute("SET search_path TO public")
            conn.execute("DROP SCHEMA older_contract CASCADE")
