"""kuberay/base/risingwave/init.sql, rendered from the table contract (`make kuberay-init-sql`).

`python -m cryptopred_core.db.risingwave_init` prints the script; `--write PATH` writes it; `--check
PATH` exits 1 when PATH differs from the render. A unit test checks the committed file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptopred_core.db.access import ddl
from cryptopred_core.db.schema import app_written_tables

DIALECT = "risingwave"
INIT_SQL = Path("kuberay/base/risingwave/init.sql")

HEADER = """\
-- RisingWave schema of cryptopred (dialect `risingwave`), run by the Job `risingwave-init`.
-- Generated from the table contract (cryptopred_core.db.schema.TABLES) by `make kuberay-init-sql`;
-- do not edit: a unit test fails while this file differs from the render.
-- Plain tables, no Kafka connector: the app is the one writer of every table (see
-- cryptopred_core.db.schema.app_written_tables); a repeated primary key overwrites the row (the
-- default ON CONFLICT OVERWRITE), so replays never duplicate. The stream job's entry point
-- creates the same tables if missing, so either may run first.
"""


def render_init_sql() -> str:
    """The whole script: the header, then one `CREATE TABLE IF NOT EXISTS` per table."""
    return HEADER + "".join(
        f"\n{ddl(t, DIALECT).as_string(None)};\n" for t in app_written_tables(DIALECT)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cryptopred_core.db.risingwave_init", description=__doc__
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", type=Path, metavar="PATH", help="write the script to PATH")
    action.add_argument("--check", type=Path, metavar="PATH", help="compare PATH with the render")
    args = parser.parse_args(argv)
    text = render_init_sql()
    if args.write is not None:
        args.write.write_text(text, encoding="utf-8")
        print(f"wrote {args.write}")
    elif args.check is not None:
        if not args.check.is_file() or args.check.read_text(encoding="utf-8") != text:
            print(f"stale (run `make kuberay-init-sql`): {args.check}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
