"""Open-loop HTTP/1.1 load generator for bench_serve.py, run as its own process.

Run: .venv/bin/python benchmarks/serve_load.py --port P --path /v1/... --rate R --seconds S
     [--method POST --body JSON] [--warmup-seconds W] [--connections C]
Sends requests on a fixed schedule (request i at start + i / rate) over keep-alive connections
(at most --connections, opened on demand), whatever the answers do. Each latency runs from the
request's scheduled send time, so time spent waiting for a free connection or in the server's
queue counts (no coordinated omission). Requests scheduled during the warm-up are not counted.
Prints one JSON object: offered and achieved rate, ok and errors, latency percentiles in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, answered 200
    errors: dict[str, int] = field(default_factory=dict)
    last_done: float = 0.0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def build_request(method: str, host: str, port: int, path: str, body: bytes) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Accept: application/json",
        "Connection: keep-alive",
    ]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status and whether the connection stays open; reads the whole body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        at = lower.find(b"content-length:")
        if at >= 0:
            length = int(lower[at + 15 : lower.index(b"\r\n", at)])
            await reader.readexactly(length)
    return status, b"connection: close" not in lower


class Pool:
    """Keep-alive connections, opened on demand up to `limit`."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.opened = 0
        self.idle: asyncio.Queue[Conn] = asyncio.Queue()

    async def acquire(self) -> Conn:
        if not self.idle.empty():
            return self.idle.get_nowait()
        if self.opened < self.limit:
            self.opened += 1
            try:
                return await asyncio.open_connection(self.host, self.port)
            except OSError:
                self.opened -= 1
                raise
        return await self.idle.get()

    def release(self, conn: Conn, reusable: bool) -> None:
        if reusable:
            self.idle.put_nowait(conn)
        else:
            conn[1].close()
            self.opened -= 1


async def one(
    pool: Pool, request: bytes, scheduled: float, counted: bool, tally: Tally, timeout_s: float
) -> None:
    try:
        conn = await asyncio.wait_for(pool.acquire(), timeout_s)
    except (TimeoutError, OSError) as exc:
        if counted:
            tally.error(type(exc).__name__)
        return
    reusable = False
    try:
        conn[1].write(request)
        status, reusable = await asyncio.wait_for(read_response(conn[0]), timeout_s)
        done = time.perf_counter()
        if counted:
            tally.last_done = max(tally.last_done, done)
            if status == 200:
                tally.latencies.append(done - scheduled)
            else:
                tally.error(f"HTTP {status}")
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        reusable = False
        if counted:
            tally.error(type(exc).__name__)
    finally:
        pool.release(conn, reusable)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    request = build_request(args.method, args.host, args.port, args.path, args.body.encode())
    pool = Pool(args.host, args.port, args.connections)
    tally = Tally()
    tasks: set[asyncio.Task[None]] = set()
    interval = 1.0 / args.rate
    start = time.perf_counter() + 0.05
    measure_from = start + args.warmup_seconds
    total = round(args.rate * (args.warmup_seconds + args.seconds))
    counted_n = 0
    i = 0
    while i < total:
        now = time.perf_counter()
        while i < total and start + i * interval <= now:  # everything due, even when late
            scheduled = start + i * interval
            counted = scheduled >= measure_from
            counted_n += counted
            task = asyncio.create_task(one(pool, request, scheduled, counted, tally, args.timeout))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if i < total:
            await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
    if tasks:
        await asyncio.wait(tasks, timeout=args.timeout + 1)
    ok = len(tally.latencies)
    lost = counted_n - ok - sum(tally.errors.values())
    if lost:
        tally.error("unanswered")
        tally.errors["unanswered"] = lost
    window = max(args.seconds, tally.last_done - measure_from)
    ms = sorted(x * 1000 for x in tally.latencies)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) >= 2 else ms * 99
    return {
        "offered": args.rate,
        "scheduled": total,
        "sent": counted_n,
        "ok": ok,
        "errors": tally.errors,
        "achieved": ok / window if window > 0 else 0.0,
        "connections": pool.opened,
        "p50_ms": q[49] if q else None,
        "p90_ms": q[89] if q else None,
        "p99_ms": q[98] if q else None,
        "max_ms": ms[-1] if ms else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--path", required=True)
    parser.add_argument("--body", default="")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
