"""Upserts into the real embedded PostgreSQL are idempotent."""

import pytest

from cryptopred.db import connect, create_schema, fetch_all, upsert
from cryptopred.records import Candle

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
        rows = fetch_all(conn, "SELECT count(*) AS n, max(close) AS hi FROM candles")
        assert rows[0]["n"] == 50 and rows[0]["hi"] == 107.0


def test_values_are_parameters_not_sql(postgres):
    evil = {"pair": "X'); DROP TABLE candles; --"}
    with connect(postgres.db_url) as conn:
        rows = fetch_all(conn, "SELECT count(*) AS n FROM candles WHERE pair = %s", (evil["pair"],))
        assert rows[0]["n"] == 0
        assert fetch_all(conn, "SELECT to_regclass('candles') IS NOT NULL AS ok")[0]["ok"]
