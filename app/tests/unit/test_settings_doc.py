"""docs/SETTINGS.md's table is generated from the settings classes and must be current."""

from pathlib import Path

import pytest

from cryptopred.settings_doc import END, START, replace_table, table

SETTINGS_PAGE = Path(__file__).resolve().parents[3] / "docs" / "SETTINGS.md"


def test_every_setting_of_every_class_has_one_row():
    rows = table().splitlines()[2:]
    envs = [row.split("`")[1] for row in rows]
    assert len(envs) == len(set(envs))
    for expected in (
        "CRYPTOPRED_KAFKA_BOOTSTRAP",  # platform
        "CRYPTOPRED_GRACE_MS",  # stream
        "CRYPTOPRED_TRAIN_USE_GPU",  # train
        "CRYPTOPRED_SERVE_PORT",  # serve
        "CRYPTOPRED_DEMO_SOURCE",  # demo
        "CRYPTOPRED_KRAKEN_WS_URL",  # ingest
    ):
        assert expected in envs
    assert "| `CRYPTOPRED_BROKER_PORT` | platform (every command) | `9092` |" in table()


def test_settings_page_table_is_current():
    text = SETTINGS_PAGE.read_text()
    assert replace_table(text, table()) == text, "run `make settings-doc`"


def test_replace_table_needs_both_markers():
    assert replace_table(f"a\n{START}\nold\n{END}\nb", "new") == f"a\n{START}\nnew\n{END}\nb"
    with pytest.raises(ValueError, match="markers"):
        replace_table("no markers here", "new")
