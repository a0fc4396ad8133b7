"""DB access: the table contract, idempotent DDL and upserts for postgres and risingwave."""

from cryptopred_core.db.access import connect, create_schema, fetch_all, upsert
from cryptopred_core.db.schema import DIALECTS, TABLES, Table, app_written_tables

__all__ = [
    "DIALECTS",
    "TABLES",
    "Table",
    "app_written_tables",
    "connect",
    "create_schema",
    "fetch_all",
    "upsert",
]
