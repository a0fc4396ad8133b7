"""The embedded stack started by its CLI in a folder of its own, for the stack's tests."""

import os
import subprocess
import sys
from pathlib import Path

from cryptopred_core.ports import free_port

CLI = [sys.executable, "-m", "cryptopred.cli"]

#: set in this process for the session's own local Ray (`secure_local_ray`); a stack started
#: by the CLI generates and uses its own
RAY_SESSION_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


def stack_environ(data_dir: Path, **extra: str) -> tuple[dict[str, str], dict[str, int]]:
    """Environment for `cryptopred` commands of a stack under `data_dir` on free ports."""
    ports = {
        name: free_port()
        for name in (
            "BROKER_PORT",
            "POSTGRES_PORT",
            "MLFLOW_PORT",
            "RAY_PORT",
            "RAY_DASHBOARD_PORT",
        )
    }
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CRYPTOPRED_") and k not in RAY_SESSION_VARS
    }
    env.update({f"CRYPTOPRED_{k}": str(v) for k, v in ports.items()})
    env["CRYPTOPRED_DATA_DIR"] = str(data_dir)
    env["CRYPTOPRED_TOPIC_PARTITIONS"] = "3"
    env["CRYPTOPRED_RAY_NUM_CPUS"] = "1"
    env["CRYPTOPRED_START_TIMEOUT_S"] = "240"  # a loaded 2-core box starts Ray slowly
    env.update(extra)
    return env, ports


def run(env, *args, timeout=240):
    return subprocess.run(
        [*CLI, *args],
        env=env,
        cwd=Path(env["CRYPTOPRED_DATA_DIR"]).parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
