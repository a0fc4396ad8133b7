"""Every column the dashboards' SQL names is a column of the table it reads, as the table
contract (`cryptopred_core.db.schema.TABLES`, built from the record types) defines it.

Each query runs on an in-memory SQLite database holding empty tables with exactly the contract's
columns: SQLite resolves every name when it prepares a statement, so a column renamed or dropped
from a record fails here. Double-quoted names become [bracketed] ones, since SQLite reads an
unknown double-quoted name as a string rather than failing.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from cryptopred.dashboards import build_all
from cryptopred.dashboards import targets as tg
from cryptopred_core.db.schema import TABLES

SAMPLE_VALUES: dict[str, tg.VariableValue] = {
    "__from": 1_767_225_600_000,
    "__to": 1_767_229_200_000,
    "__interval_ms": 60_000,
    "pair": "BTC/USD",
    "candle_seconds": "60",
    "horizon": ["60", "300"],
    "model_version": "3",
}


def _concat(*parts: object) -> str:
    return "".join(str(p) for p in parts if p is not None)


@pytest.fixture()
def contract_db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.create_function("concat", -1, _concat)  # built into SQLite only from 3.44
    for table in TABLES.values():
        columns = ", ".join(f"[{name}]" for name in table.column_names)
        conn.execute(f"CREATE TABLE [{table.name}] ({columns})")
    yield conn
    conn.close()


def sqlite_text(query: str) -> str:
    """A query bound by `targets.bind` (psycopg placeholders) in SQLite's spelling."""
    text = re.sub(r"%%|%s", lambda m: "%" if m.group(0) == "%%" else "?", query)
    return re.sub(r'"([^"]*)"', r"[\1]", text)


def column_problem(conn: sqlite3.Connection, query: str, params: list[Any]) -> str | None:
    """Why SQLite cannot run the bound query on the contract's tables (None when it can)."""
    try:
        conn.execute(sqlite_text(query), params).fetchall()
    except sqlite3.OperationalError as exc:
        return str(exc)
    return None


def test_every_dashboard_query_names_only_contract_columns(
    contract_db: sqlite3.Connection,
) -> None:
    problems = {}
    n_queries = 0
    for name, board in build_all().items():
        multi = tg.multi_variables(board)
        for target in [*tg.variable_queries(board), *tg.sql_targets(board)]:
            query, params = tg.bind(target.text, SAMPLE_VALUES, multi)
            n_queries += 1
            problem = column_problem(contract_db, query, params)
            if problem:
                problems[f"{name}/{target.panel} [{target.ref}]"] = problem
    assert n_queries >= 20
    assert not problems, problems


@pytest.mark.parametrize(
    ("query", "missing"),
    [
        ("SELECT close_price FROM candles WHERE pair = %s", "close_price"),
        ("SELECT horizon_seconds FROM candles", "horizon_seconds"),  # a column of predictions
        ('SELECT "partitions" FROM stream_checkpoints', "partitions"),
        ("SELECT m FROM (SELECT sma_8 AS m FROM technical_indicators) AS s", "sma_8"),
        ("SELECT count(*) FROM prediction_outcomes GROUP BY model", "model"),
    ],
)
def test_the_check_names_a_column_the_table_lacks(
    contract_db: sqlite3.Connection, query: str, missing: str
) -> None:
    problem = column_problem(contract_db, query, ["BTC/USD"] if "%s" in query else [])
    assert problem == f"no such column: {missing}"


def test_the_check_passes_contract_columns_and_output_aliases(
    contract_db: sqlite3.Connection,
) -> None:
    query = (
        'SELECT window_start_ms AS "time", CONCAT(pair, %s) AS label, "partition" '
        "FROM candles, stream_checkpoints WHERE close >= 0 AND final "
        'AND window_start_ms %% 60000 = 0 ORDER BY "time"'
    )
    assert column_problem(contract_db, query, [" s"]) is None
