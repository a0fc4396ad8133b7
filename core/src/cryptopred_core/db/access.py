"""Connections, idempotent DDL and one upsert helper per dialect; parameterised SQL only."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from cryptopred_core.db.schema import TABLES, Table, app_written_tables, check_dialect


def connect(url: str, *, autocommit: bool = False, timeout_s: float = 10) -> psycopg.Connection:
    """A connection to PostgreSQL or RisingWave (both speak the PostgreSQL protocol)."""
    return psycopg.connect(url, autocommit=autocommit, connect_timeout=max(1, int(timeout_s)))


def ddl(table: Table, dialect: str) -> sql.Composed:
    """`CREATE TABLE IF NOT EXISTS` for one table in one dialect, one column a line (the
    layout of the rendered kuberay/base/risingwave/init.sql)."""
    check_dialect(dialect)
    cols = [
        sql.SQL("    {} {}{}").format(
            sql.Identifier(c.name),
            sql.SQL(c.sql_type(dialect)),
            sql.SQL("" if c.nullable else " NOT NULL"),
        )
        for c in table.columns
    ]
    key = sql.SQL("    PRIMARY KEY ({})").format(
        sql.SQL(", ").join(sql.Identifier(k) for k in table.primary_key)
    )
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} (\n{}\n)").format(
        sql.Identifier(table.name), sql.SQL(",\n").join([*cols, key])
    )


def create_schema(
    conn: psycopg.Connection, dialect: str, only: Iterable[Table] | None = None
) -> None:
    """Create every table the app writes on `dialect` (or those of `only`) and add the nullable
    columns a table created by an older contract lacks; running it again changes nothing."""
    with conn.cursor() as cur:
        for table in app_written_tables(dialect) if only is None else only:
            cur.execute(ddl(table, dialect))
            for statement in add_missing_columns(table, _existing_columns(cur, table), dialect):
                cur.execute(statement)
    if not conn.autocommit:
        conn.commit()


def _existing_columns(cur: psycopg.Cursor[Any], table: Table) -> set[str]:
    cur.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = %s AND table_schema = current_schema()",
        (table.name,),
    )
    return {str(row[0]) for row in cur.fetchall()}


def add_missing_columns(table: Table, existing: set[str], dialect: str) -> list[sql.Composed]:
    """`ALTER TABLE ... ADD COLUMN` for each nullable column of `table` not in `existing`
    (a NOT NULL column cannot be added to rows that lack it; the contract only adds
    nullable ones). Both dialects accept the statement; RisingWave has no `IF NOT EXISTS`."""
    check_dialect(dialect)
    return [
        sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
            sql.Identifier(table.name), sql.Identifier(c.name), sql.SQL(c.sql_type(dialect))
        )
        for c in table.columns
        if c.nullable and c.name not in existing
    ]


def upsert_statement(table: Table, dialect: str) -> sql.Composed:
    """The insert-or-overwrite statement for one row of `table`."""
    check_dialect(dialect)
    names = table.column_names
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table.name),
        sql.SQL(", ").join(sql.Identifier(n) for n in names),
        sql.SQL(", ").join(sql.Placeholder() * len(names)),
    )
    if dialect == "risingwave":
        # Tables with a primary key overwrite a repeated key (ON CONFLICT OVERWRITE).
        return insert
    updates = [
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n))
        for n in names
        if n not in table.primary_key
    ]
    return sql.SQL("{} ON CONFLICT ({}) DO UPDATE SET {}{}").format(
        insert,
        sql.SQL(", ").join(sql.Identifier(k) for k in table.primary_key),
        sql.SQL(", ").join(updates),
        _final_guard(table),
    )


def _final_guard(table: Table) -> sql.Composable:
    """Postgres: a final row (candle or indicator row of a closed window) is never replaced by
    an open one, so an open update that reaches the DB late cannot undo its window's close."""
    if "final" not in table.column_names:
        return sql.SQL("")
    return sql.SQL(" WHERE NOT {}.{} OR EXCLUDED.{}").format(
        sql.Identifier(table.name), sql.Identifier("final"), sql.Identifier("final")
    )


def upsert_json_statement(table: Table) -> sql.Composed:
    """Postgres: one statement that upserts a whole batch given as one JSON array of rows.

    `json_populate_recordset` parses the rows on the server with each column's own input
    function (floats round-trip exactly), so a batch is a single parameter and a single round
    trip instead of one bound statement per row.
    """
    names = sql.SQL(", ").join(sql.Identifier(n) for n in table.column_names)
    updates = [
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n))
        for n in table.column_names
        if n not in table.primary_key
    ]
    return sql.SQL(
        "INSERT INTO {0} ({1}) SELECT {1} FROM json_populate_recordset(NULL::{0}, %s::json) "
        "ON CONFLICT ({2}) DO UPDATE SET {3}{4}"
    ).format(
        sql.Identifier(table.name),
        names,
        sql.SQL(", ").join(sql.Identifier(k) for k in table.primary_key),
        sql.SQL(", ").join(updates),
        _final_guard(table),
    )


_json_encoder = msgspec.json.Encoder()


def _row_values(row: msgspec.Struct | Mapping[str, Any], names: Sequence[str]) -> tuple[Any, ...]:
    if isinstance(row, msgspec.Struct):
        return tuple(getattr(row, n) for n in names)
    return tuple(row[n] for n in names)


def upsert(
    conn: psycopg.Connection,
    table_name: str,
    rows: Sequence[msgspec.Struct | Mapping[str, Any]],
    dialect: str,
    *,
    commit: bool = True,
) -> int:
    """Write rows so that a repeated key overwrites; return how many were sent. A table the app
    does not write on `dialect` (see `app_written_tables`) is refused."""
    if table_name not in _app_written_names(dialect):
        raise ValueError(f"the app does not write {table_name} on {dialect}")
    table = TABLES[table_name]
    if not rows:
        return 0
    structs = all(isinstance(r, msgspec.Struct) for r in rows)
    if dialect == "postgres":
        rows = _last_per_key(table, rows, structs)
    if dialect == "postgres" and structs:
        # record structs encode to exactly the table's columns (a mapping may hold other types)
        conn.execute(_json_statement(table_name), (_json_encoder.encode(rows).decode(),))
    else:
        statement = upsert_statement(table, dialect)
        values = [_row_values(r, table.column_names) for r in rows]
        with conn.cursor() as cur:
            cur.executemany(statement, values)
            if dialect == "risingwave":
                cur.execute("FLUSH")
    if commit and not conn.autocommit:
        conn.commit()
    return len(rows)


@cache
def _app_written_names(dialect: str) -> frozenset[str]:
    return frozenset(t.name for t in app_written_tables(dialect))


@cache
def _json_statement(table_name: str) -> bytes:
    """Rendered once: composing the identifiers costs more than the batch's JSON."""
    return upsert_json_statement(TABLES[table_name]).as_bytes(None)


def _last_per_key(
    table: Table, rows: Sequence[msgspec.Struct | Mapping[str, Any]], structs: bool
) -> list[msgspec.Struct | Mapping[str, Any]]:
    """Keep the last row of each key, in first-seen order (one statement per key)."""
    key = table.primary_key
    get: Callable[[Any], Any] = (attrgetter if structs else itemgetter)(*key)
    return list({get(row): row for row in rows}.values())


def fetch_all(
    conn: psycopg.Connection, query: str | sql.Composable, params: Sequence[Any] = ()
) -> list[dict[str, Any]]:
    """Run a parameterised query and return rows as dicts."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(query, params)  # type: ignore[arg-type]
        return list(cur.fetchall())
