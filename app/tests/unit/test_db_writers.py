"""One writer per table on each dialect: the app (upsert), never also a Kafka connector."""

from __future__ import annotations

import pytest

from cryptopred_core.db import DIALECTS, TABLES, app_written_tables, upsert
from cryptopred_core.db.access import ddl
from cryptopred_core.db.risingwave_init import render_init_sql
from cryptopred_testsupport.kuberay.checks import parse_tables

CONNECTOR_CLAUSE = """
WITH (
    connector = 'kafka',
    topic = 'candles',
    properties.bootstrap.server = 'cryptopred-kafka-bootstrap:9092'
)
FORMAT PLAIN ENCODE JSON"""


def _schema_sql(dialect: str) -> str:
    """Every DDL statement run on `dialect`: init.sql (RisingWave) and the app's create_schema."""
    app = "".join(f"{ddl(t, dialect).as_string(None)};\n" for t in app_written_tables(dialect))
    return (render_init_sql() if dialect == "risingwave" else "") + app


def _writers(schema_sql: str, dialect: str) -> dict[str, list[str]]:
    """table -> what writes its rows: a Kafka connector in its DDL, and/or the app's upserts."""
    found: dict[str, list[str]] = {name: [] for name in TABLES}
    for name, parsed in parse_tables(schema_sql).items():
        if parsed["options"].get("connector"):
            found[name].append(f"{parsed['options']['connector']} connector")
    for table in app_written_tables(dialect):
        found[table.name].append("app")
    return found


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_table_has_exactly_one_writer(dialect: str) -> None:
    writers = _writers(_schema_sql(dialect), dialect)
    assert writers == {name: ["app"] for name in TABLES}


def test_a_connector_on_a_table_the_app_writes_counts_as_a_second_writer() -> None:
    sql_text = render_init_sql()
    end = sql_text.index(";", sql_text.index('CREATE TABLE IF NOT EXISTS "candles"'))
    doubled = sql_text[:end] + CONNECTOR_CLAUSE + sql_text[end:]
    writers = _writers(doubled, "risingwave")
    assert writers["candles"] == ["kafka connector", "app"]


def test_upsert_refuses_a_dialect_without_a_write_plan() -> None:
    with pytest.raises(ValueError, match="unknown dialect 'mysql'"):
        upsert(None, "candles", [], "mysql")  # type: ignore[arg-type]
