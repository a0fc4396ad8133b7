"""Entry point for RayJob / RayCronJob and the retraining scheduler's runs:
`python -m cryptopred_training.job --pair BTC/USD ...` (the options of `cryptopred train`)."""

from __future__ import annotations


def main() -> None:
    from cryptopred_core.raycluster import keep_workers_in_this_env, prepare_ray_auth
    from cryptopred_core.settings import settings_or_none

    prepare_ray_auth(settings_or_none())  # before anything imports ray (read at import)
    keep_workers_in_this_env()
    from cryptopred_training.cli import app

    app(prog_name="cryptopred-train")


if __name__ == "__main__":
    main()
