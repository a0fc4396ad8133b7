"""kuberay/base/risingwave/init.sql is the render of the table contract, never hand-edited."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptopred_core.db.access import ddl
from cryptopred_core.db.risingwave_init import INIT_SQL, main, render_init_sql
from cryptopred_core.db.schema import TABLES
from cryptopred_testsupport.kuberay.checks import parse_tables
from cryptopred_testsupport.kuberay.render import ROOT, make_kuberay


def test_the_committed_init_sql_is_the_render() -> None:
    committed = (ROOT / INIT_SQL).read_text(encoding="utf-8")
    assert committed == render_init_sql(), "stale init.sql: run `make kuberay-init-sql`"


def test_the_render_creates_every_table_with_the_ddl_the_app_runs() -> None:
    text = render_init_sql()
    parsed = parse_tables(text)
    assert list(parsed) == list(TABLES)
    for table in TABLES.values():
        assert ddl(table, "risingwave").as_string(None) in text, table.name
        columns = [(c.name, c.sql_type("risingwave"), c.nullable) for c in table.columns]
        assert parsed[table.name]["columns"] == columns
        assert parsed[table.name]["primary_key"] == table.primary_key


def test_check_fails_on_a_stale_file_and_write_repairs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "init.sql"
    path.write_text(render_init_sql().replace("DOUBLE PRECISION", "REAL", 1))
    assert main(["--check", str(path)]) == 1
    assert "make kuberay-init-sql" in capsys.readouterr().err
    assert main(["--write", str(path)]) == 0
    assert main(["--check", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == render_init_sql()


def test_make_target_writes_the_committed_path() -> None:
    done = make_kuberay("-n", "kuberay-init-sql")
    assert done.returncode == 0, done.stderr
    assert f"python -m cryptopred_core.db.risingwave_init --write {INIT_SQL}" in done.stdout
