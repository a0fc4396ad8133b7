"""DB access: the table contract, idempotent DDL and upserts for postgres and risingwave."""

from cryptopred_core.db.access import connect, create_schema, fetch_all, upsert
from cryptopred_core.db.schema import TABLES, TOPIC_TABLES, Table, app_created_tables

__all__ = [
    "TABLES",
    "TOPIC_TABLES",
    "Table",
    "app_created_tables",
    "connect",
    "create_schema",
    "fetch_all",
    "upsert",
]
