"""Credentials the embedded stack generates: random secrets in owner-only files."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def read_or_create_secret(path: Path, n_bytes: int = 32) -> str:
    """The secret stored at `path`, generated first (hex, `n_bytes` random bytes) when absent.

    The folder is made owner-only (0700) and the file is created owner-only (0600) in one step,
    so the secret is never readable by others, not even briefly; two processes creating it at
    once agree on the first one written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(n_bytes))
    return path.read_text().strip()


def write_private(path: Path, text: str) -> None:
    """Replace `path` by an owner-only (0600) file holding `text`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    partial.replace(path)
