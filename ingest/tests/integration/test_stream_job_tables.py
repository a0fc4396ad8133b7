"""The stream job's entry point creates the tables its stages need on an empty database."""

from __future__ import annotations

import pytest

from cryptopred_core import tables
from cryptopred_core.db import TABLES, connect
from cryptopred_core.settings import Dialect, Settings
from cryptopred_ingest.stream.job import ensure_tables

pytestmark = pytest.mark.integration


def _tables(settings: Settings) -> set[str]:
    with connect(settings.db_url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    return {str(row[0]) for row in rows}


def _empty_database(postgres: Settings, name: str, dialect: Dialect) -> Settings:
    with connect(postgres.db_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.model_copy(
        update={"database_url": None, "postgres_db": name, "db_dialect": dialect}
    )


@pytest.mark.parametrize("dialect", ["postgres", "risingwave"])
def test_ensure_tables_creates_the_missing_tables_once(
    postgres: Settings, dialect: Dialect
) -> None:
    # RisingWave's DDL is PostgreSQL-compatible, so its tables are created here too.
    settings = _empty_database(postgres, f"stream_job_{dialect}", dialect)
    assert _tables(settings) == set()
    expected = set(TABLES)  # the app writes every table on both dialects
    assert set(ensure_tables(settings)) == expected
    assert _tables(settings) == expected
    assert tables.STREAM_CHECKPOINTS in expected and tables.STREAM_PAIR_STATES in expected
    with connect(settings.db_url) as conn:
        conn.execute("INSERT INTO stream_checkpoints VALUES ('g', 'trades', 0, 41, '{}', 1)")
        conn.commit()
    ensure_tables(settings)  # again: nothing changes, the row stays
    with connect(settings.db_url) as conn:
        rows = conn.execute('SELECT "offset" FROM stream_checkpoints').fetchall()
    assert rows == [(41,)]
    assert _tables(settings) == expected
