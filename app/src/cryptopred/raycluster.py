"""Joining an existing Ray cluster by address."""

from __future__ import annotations

import os
from pathlib import Path


def prepare_ray_auth() -> None:
    """Use Ray's token authentication when this machine has a token.

    Ray 2.60 turns token authentication on by itself for a cluster started while
    `~/.ray/auth_token` exists (the embedded head, for example); a driver that then joins it
    by address is refused unless it uses the token too. Call before `ray` is imported (it reads
    the mode at import), e.g. first thing in an entry point.
    """
    if (Path.home() / ".ray" / "auth_token").exists():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
