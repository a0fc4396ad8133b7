"""DB access: the table contract, idempotent DDL and upserts for postgres and risingwave."""

from cryptopred.db.access import connect, create_schema, fetch_all, upsert
from cryptopred.db.schema import TABLES, Table

__all__ = ["TABLES", "Table", "connect", "create_schema", "fetch_all", "upsert"]
