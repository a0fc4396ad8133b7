"""The requests of a Serve node failure: summarized from when each went and whether it was
answered, and sent for real to a local HTTP server that stops answering for a while."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptopred.rehearsal.traffic import Sent, Traffic, summarize


def run_of(*oks: bool) -> list[Sent]:
    return [Sent(float(i), ok, "" if ok else f"e{i}") for i, ok in enumerate(oks)]


def test_summary_counts_failures_the_longest_stretch_and_answers_while_down() -> None:
    sent = run_of(True, False, False, False, True, False, True, True, True)
    summary = summarize(sent, down_from=1.0, down_to=5.5, settle_s=2.0)
    assert (summary.total, summary.failed) == (9, 4)
    assert summary.longest_failing_s == 2.0  # requests 1 to 3
    assert summary.answered_while_down == 1  # request 4
    assert summary.answering_at_end and summary.first_error == "e1"
    check = summary.check("w0")
    assert check.ok and "9 requests, 4 failed (44.4%)" in check.detail


def test_no_answer_while_down_or_failing_at_the_end_fails_the_check() -> None:
    assert not summarize(run_of(True, False, False, True), 1.0, 2.0, 0.5).check("w0").ok
    assert not summarize(run_of(True, True, True, False), 0.0, 1.0, 0.5).check("w0").ok
    assert not summarize([], 0.0, 1.0, 0.5).check("w0").ok


def test_traffic_counts_what_a_server_answers_and_what_it_refuses() -> None:
    status = {"code": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status["code"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    traffic = Traffic(f"http://127.0.0.1:{server.server_address[1]}/x", interval_s=0.02)
    traffic.start()

    def after_three_more() -> None:
        wanted, deadline = len(traffic.sent) + 3, time.monotonic() + 30
        while len(traffic.sent) < wanted and time.monotonic() < deadline:
            time.sleep(0.01)

    after_three_more()
    status["code"] = 503
    after_three_more()
    status["code"] = 200
    after_three_more()
    after_three_more()  # the one in flight at the switch may have either answer
    sent = traffic.stop()
    server.shutdown()
    server.server_close()
    oks = [s.ok for s in sent]
    assert oks[0] and oks[-1] and not all(oks)
    assert {s.detail for s in sent if not s.ok} == {"503"}
