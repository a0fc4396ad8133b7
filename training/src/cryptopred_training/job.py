"""Entry point for RayJob / RayCronJob: `python -m cryptopred_training.job --pair BTC/USD ...`."""

from __future__ import annotations


def main() -> None:
    from cryptopred_training.cli import app

    app(prog_name="cryptopred-train")


if __name__ == "__main__":
    main()
