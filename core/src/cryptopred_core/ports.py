"""Local TCP ports: whether one is taken, a free one, a free one for a late listener."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port (or it cannot be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        if probe.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers bind with SO_REUSEADDR, so connections in TIME_WAIT do not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel picks as free now (from its ephemeral range)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' source ports (Linux; else its default)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_listen_port(host: str = "0.0.0.0") -> int:
    """A free port outside the ephemeral range, for a listener that binds it long after it is
    picked (Serve starts HAProxy when an app is first deployed). An ephemeral port from
    `free_port` can meanwhile become some outgoing connection's source port: HAProxy then
    failed to start with "Address already in use" minutes into a test run."""
    low, high = ephemeral_port_range()
    ports = range(20_000, low) if low > 21_000 else range(high + 1, 65_536)
    for port in random.sample(ports, min(200, len(ports))):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    return free_port(host)
