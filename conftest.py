"""Root conftest: makes the shared real-service fixtures available to every member's tests,
and ends the run with one line naming every group of skipped tests and why."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

pytest_plugins = ["cryptopred_testsupport.fixtures"]


def skip_reason(report: Any) -> str:
    """The reason a skipped test report gives (pytest keeps it as (file, line, reason))."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return str(reason).removeprefix("Skipped: ")


def skip_summary(reports: Iterable[Any]) -> str | None:
    """One line: every distinct skip reason with its count, most frequent first; None when
    nothing was skipped. The reasons name the tool or data that would run the tests."""
    counts = Counter(skip_reason(r) for r in reports)
    if not counts:
        return None
    groups = "; ".join(f"{n} x {reason}" for reason, n in counts.most_common())
    return f"skipped {sum(counts.values())} tests in {len(counts)} groups: {groups}"


def pytest_unconfigure(config: Any) -> None:
    """After pytest's own closing line, so the skips are the run's last word."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    line = skip_summary(reporter.stats.get("skipped", []))
    if line is not None:
        reporter.write_line(line, yellow=True)
