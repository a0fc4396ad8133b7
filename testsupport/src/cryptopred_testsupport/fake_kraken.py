"""A fake Kraken on 127.0.0.1: WS v2 `trade` channel and REST `Trades`, for tests only.

Every pair has the same scripted tape of trades, dated from `base_ts_ns` (pass `time.time_ns()`
for a tape that happens now). Connection k plays `segments[k]` = (start, end, action) or
(start, end, action, delay_s): after the subscribe ack it stays silent `delay_s` seconds (the
trades before `start` happen meanwhile), plays tape indices [start, end), then "close" (a
forced disconnect), "silence" (no more frames, socket kept open) or "idle" (heartbeats only).
Indices between one segment's end and the next one's start, and those in `ws_drop`, are never
sent on the WS: only REST has them. With `ws_pause_s`, the WS sends nothing at all that long
where the `ws_drop` stretch starts (a stall), and no frames for the dropped stretch. REST
serves the tape up to what has happened (played or dropped; with `rest_by_time`, every trade
dated up to now), paginated, and answers every
`rate_limit_every`-th call with a 429 or a rate-limit error.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from cryptopred_ingest.sources.kraken_rest import rest_pair

BASE_TS_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class TapeTrade:
    trade_id: int
    ts_ns: int
    price: float
    qty: float
    side: str


def rfc3339(ts_ns: int) -> str:
    import datetime as dt

    seconds, rest_ns = divmod(ts_ns, 1_000_000_000)
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{rest_ns // 1000:06d}Z"


def make_tape(
    n: int, first_id: int = 5000, step_ms: int = 137, base_ts_ns: int = BASE_TS_NS
) -> list[TapeTrade]:
    return [
        TapeTrade(
            first_id + i,
            base_ts_ns + i * step_ms * 1_000_000 + 123_456,
            100.0 + (i % 17) / 10,
            0.5 + (i % 5) / 100,
            "buy" if i % 3 else "sell",
        )
        for i in range(n)
    ]


@dataclass
class FakeKraken:
    pairs: list[str]
    tape_size: int = 150
    segments: list[tuple[int, int, str] | tuple[int, int, str, float]] = field(
        default_factory=lambda: [(0, 150, "idle")]
    )
    ws_drop: tuple[int, int] | None = None
    ws_pause_s: float = 0.0
    base_ts_ns: int = BASE_TS_NS
    step_ms: int = 137
    batch: int = 5
    send_interval_s: float = 0.002
    heartbeat_s: float = 0.2
    page_size: int = 25
    rate_limit_every: int = 3
    extra_messages: list[str] = field(default_factory=list)
    rest_by_time: bool = False  # REST has every trade dated up to now (a tape dated from now)
    connections: int = 0
    rest_calls: int = 0
    rest_unavailable_next: int = 0  # answer the next this many REST calls with HTTP 503
    rest_limited: int = 0
    subscribe_requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tape = make_tape(self.tape_size, step_ms=self.step_ms, base_ts_ns=self.base_ts_ns)
        self.horizon = self.tape_size
        self._by_rest = {rest_pair(p): p for p in self.pairs}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_ws: asyncio.Event | None = None
        self._threads: list[threading.Thread] = []
        self._http: ThreadingHTTPServer | None = None
        self.ws_port = 0
        self._ready = threading.Event()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/v2"

    @property
    def rest_url(self) -> str:
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def start(self) -> FakeKraken:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _rest_handler(self))
        self._threads = [
            threading.Thread(target=self._http.serve_forever, daemon=True),
            threading.Thread(target=lambda: asyncio.run(self._ws_main()), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake Kraken WS did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop_ws is not None:
            self._loop.call_soon_threadsafe(self._stop_ws.set)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    # --- WebSocket -------------------------------------------------------------------------
    async def _ws_main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_ws = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0) as server:
            self.ws_port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop_ws.wait()

    def trade_message(self, pair: str, items: list[TapeTrade]) -> str:
        data = [
            {
                "symbol": pair,
                "side": t.side,
                "price": t.price,
                "qty": t.qty,
                "ord_type": "limit",
                "trade_id": t.trade_id,
                "timestamp": rfc3339(t.ts_ns),
            }
            for t in items
        ]
        return json.dumps({"channel": "trade", "type": "update", "data": data})

    async def _handle(self, ws: ServerConnection) -> None:
        index = self.connections
        self.connections += 1
        segment = self.segments[index] if index < len(self.segments) else (0, 0, "idle")
        start, end, action = segment[:3]
        delay_s = float(segment[3]) if len(segment) > 3 else 0.0
        if index >= len(self.segments):
            self.horizon = self.tape_size
        elif not delay_s:
            self.horizon = start
        drop = range(*self.ws_drop) if self.ws_drop else range(0)
        status = {"channel": "status", "type": "update", "data": [{"system": "online"}]}
        try:
            await ws.send(json.dumps(status))
            request = json.loads(await ws.recv())
            self.subscribe_requests.append(request)
            for symbol in request["params"]["symbol"]:
                ok = symbol in self.pairs
                reply: dict[str, Any] = {"method": "subscribe", "success": ok}
                if ok:
                    reply["result"] = {"channel": "trade", "symbol": symbol, "snapshot": False}
                else:
                    reply["error"] = f"Currency pair not supported {symbol}"
                await ws.send(json.dumps(reply))
            if index == 0:
                for raw in self.extra_messages:
                    await ws.send(raw)
            if delay_s:
                await asyncio.sleep(delay_s)
                self.horizon = max(self.horizon, start)
            for i in range(start, end, self.batch):
                items = self.tape[i : min(i + self.batch, end)]
                sent = [t for j, t in enumerate(items, i) if j not in drop]
                dropped = [j for j in range(i, i + len(items)) if j in drop]
                if dropped and dropped[0] == drop.start and self.ws_pause_s:
                    await asyncio.sleep(self.ws_pause_s)  # a stall: no frames at all
                    self.horizon = max(self.horizon, drop.stop)  # its trades happened meanwhile
                if dropped:  # REST has the dropped trades from the moment they happen
                    self.horizon = max(self.horizon, dropped[-1] + 1)
                if not sent and self.ws_pause_s:
                    continue
                for pair in self.pairs:
                    if sent:
                        await ws.send(self.trade_message(pair, sent))
                await ws.send('{"channel":"heartbeat"}')
                await asyncio.sleep(self.send_interval_s)
            if action == "close":
                await ws.close(code=1011, reason="forced disconnect")
                return
            if action == "silence":
                await ws.wait_closed()
                return
            while True:
                await ws.send('{"channel":"heartbeat"}')
                await asyncio.sleep(self.heartbeat_s)
        except Exception:  # the client went away; a fake server does not care how
            return

    # --- REST ------------------------------------------------------------------------------
    def rest_trades(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        self.rest_calls += 1
        if self.rest_unavailable_next > 0:
            self.rest_unavailable_next -= 1
            return 503, {"error": ["EService:Unavailable"]}
        if self.rate_limit_every and self.rest_calls % self.rate_limit_every == 0:
            self.rest_limited += 1
            if self.rest_limited % 2:
                return 429, {"error": ["EGeneral:Too many requests"]}
            return 200, {"error": ["EAPI:Rate limit exceeded"], "result": {}}
        pair = self._by_rest.get(query.get("pair", [""])[0])
        if pair is None:
            return 200, {"error": ["EQuery:Unknown asset pair"], "result": {}}
        since_ns = int(query.get("since", ["0"])[0])
        if self.rest_by_time:  # the exchange's record: every trade that happened by now
            now_ns = time.time_ns()
            visible = [t for t in self.tape if since_ns < t.ts_ns <= now_ns]
        else:
            visible = [t for t in self.tape[: self.horizon] if t.ts_ns > since_ns]
        page = visible[: self.page_size]
        rows = [
            [f"{t.price:.5f}", f"{t.qty:.8f}", t.ts_ns / 1e9, t.side[0], "l", "", t.trade_id]
            for t in page
        ]
        last_ns = page[-1].ts_ns if page else since_ns
        return 200, {"error": [], "result": {rest_pair(pair): rows, "last": str(last_ns)}}


def _rest_handler(fake: FakeKraken) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlparse(self.path)
            if url.path != "/0/public/Trades":
                code, body = 404, {"error": ["EGeneral:Unknown method"]}
            else:
                code, body = fake.rest_trades(urllib.parse.parse_qs(url.query))
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
