"""Write the dashboards' JSON files, or with --check compare them with their definitions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cryptopred.dashboards import build_all

DEFAULT_OUT = Path("dashboards")


def render(board: object) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cryptopred.dashboards", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the JSON files")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a file differs from its definition"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, board in build_all().items():
        path = args.out / f"{name}.json"
        text = render(board)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print(f"stale (run `make dashboards`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
