import pytest

from cryptopred_core import tables
from cryptopred_core.db.access import (
    add_missing_columns,
    ddl,
    upsert_json_statement,
    upsert_statement,
)
from cryptopred_core.db.schema import TABLES, app_written_tables
from cryptopred_core.records import Candle, IndicatorRow, Prediction, field_names


def text(composed):
    return composed.as_string(None)


def test_tables_follow_the_record_shapes_and_keys():
    assert set(TABLES) == set(tables.ALL_TABLES)
    assert TABLES["candles"].column_names == field_names(Candle)
    assert TABLES["technical_indicators"].column_names == field_names(IndicatorRow)
    assert TABLES["predictions"].column_names == field_names(Prediction)
    assert TABLES["candles"].primary_key == ("pair", "candle_seconds", "window_start_ms")
    assert TABLES["prediction_outcomes"].primary_key == TABLES["predictions"].primary_key


def test_postgres_ddl_is_idempotent_and_typed():
    statement = text(ddl(TABLES["technical_indicators"], "postgres"))
    assert statement.startswith('CREATE TABLE IF NOT EXISTS "technical_indicators"')
    assert '"sma_7" DOUBLE PRECISION,' in statement
    assert '"pair" TEXT NOT NULL' in statement
    assert 'PRIMARY KEY ("pair", "candle_seconds", "window_start_ms")' in statement


def test_upserts_per_dialect_are_parameterised():
    pg = text(upsert_statement(TABLES["candles"], "postgres"))
    assert "%s" in pg and "ON CONFLICT" in pg and '"close" = EXCLUDED."close"' in pg
    assert '"pair" = EXCLUDED' not in pg
    rw = text(upsert_statement(TABLES["candles"], "risingwave"))
    assert "ON CONFLICT" not in rw and "%s" in rw
    assert '"pair" VARCHAR' in text(ddl(TABLES["candles"], "risingwave"))


def test_postgres_upserts_never_turn_a_final_row_open():
    guard = 'WHERE NOT "candles"."final" OR EXCLUDED."final"'
    assert text(upsert_statement(TABLES["candles"], "postgres")).endswith(guard)
    assert text(upsert_json_statement(TABLES["candles"])).endswith(guard)
    assert "json_populate_recordset" in text(upsert_json_statement(TABLES["candles"]))
    ti = text(upsert_json_statement(TABLES["technical_indicators"]))
    assert ti.endswith('WHERE NOT "technical_indicators"."final" OR EXCLUDED."final"')
    assert "WHERE" not in text(upsert_statement(TABLES["predictions"], "postgres"))
    assert "WHERE" not in text(upsert_json_statement(TABLES["predictions"]))


def test_unknown_dialect_is_refused():
    with pytest.raises(ValueError, match="unknown dialect 'mysql'"):
        upsert_statement(TABLES["candles"], "mysql")


def test_an_older_outcomes_table_gets_the_nullable_columns_it_lacks():
    table = TABLES["prediction_outcomes"]
    older = set(table.column_names) - {"pinball_loss", "baseline_pinball_loss", "baseline_version"}
    statements = [text(s) for s in add_missing_columns(table, older, "postgres")]
    assert statements == [
        'ALTER TABLE "prediction_outcomes" ADD COLUMN "pinball_loss" DOUBLE PRECISION',
        'ALTER TABLE "prediction_outcomes" ADD COLUMN "baseline_pinball_loss" DOUBLE PRECISION',
        'ALTER TABLE "prediction_outcomes" ADD COLUMN "baseline_version" TEXT',
    ]
    assert add_missing_columns(table, set(table.column_names), "risingwave") == []


def test_the_app_creates_every_table_on_both_dialects() -> None:
    created = {t.name: text(ddl(t, "risingwave")) for t in app_written_tables("risingwave")}
    assert set(created) == set(TABLES)
    for internal in (
        tables.STREAM_CHECKPOINTS,
        tables.STREAM_PAIR_STATES,
        tables.SOURCE_WATERMARKS,
    ):
        assert created[internal].startswith(f'CREATE TABLE IF NOT EXISTS "{internal}"')
    assert '"state" VARCHAR NOT NULL' in created[tables.STREAM_CHECKPOINTS]
    assert {t.name for t in app_written_tables("postgres")} == set(TABLES)
    with pytest.raises(ValueError, match="unknown dialect"):
        app_written_tables("mysql")
