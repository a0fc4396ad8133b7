"""The settings table of docs/SETTINGS.md, generated from every settings class
(`make settings-doc`).

`python -m cryptopred.settings_doc` prints the table; `--write docs/SETTINGS.md` replaces the
table between its markers; a unit test checks the page is current.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from cryptopred.demo.settings import DemoSettings
from cryptopred_core.settings import ENV_PREFIX, Settings
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_serving.settings import ServeSettings
from cryptopred_training.settings import TrainSettings

START = "<!-- settings-table:start -->"
END = "<!-- settings-table:end -->"

# (class, heading): the platform's settings first, then each deployable's own.
SETTINGS_CLASSES: tuple[tuple[type[Settings], str], ...] = (
    (Settings, "platform (every command)"),
    (IngestSettings, "ingest"),
    (StreamSettings, "stream"),
    (TrainSettings, "train"),
    (ServeSettings, "serve"),
    (DemoSettings, "demo"),
)


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if value is None:
        return "unset"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def table() -> str:
    """One row per env var: the class that adds it, its default and description."""
    lines = ["| env var | used by | default | meaning |", "| --- | --- | --- | --- |"]
    seen: set[str] = set()
    for cls, heading in SETTINGS_CLASSES:
        for field, info in cls.model_fields.items():
            if field in seen:
                continue
            seen.add(field)
            env = f"{ENV_PREFIX}{field.upper()}"
            meaning = (info.description or "").replace("|", "\\|")
            lines.append(f"| `{env}` | {heading} | `{_default(info)}` | {meaning} |")
    return "\n".join(lines)


def replace_table(text: str, new_table: str) -> str:
    """`text` with the part between the markers replaced; ValueError when a marker is missing."""
    if START not in text or END not in text:
        raise ValueError(f"the markers {START} and {END} are missing")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{new_table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, help="replace the table in this file")
    args = parser.parse_args(argv)
    if args.write is None:
        print(table())
        return 0
    args.write.write_text(replace_table(args.write.read_text(), table()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
