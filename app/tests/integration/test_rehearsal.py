"""The cluster rehearsal at reduced size: the dev overlay's Ray pods as `ray start` processes in
memory cgroups, the embedded stand-ins on an empty DB, the manifests' jobs submitted as written
(backfill from a fake Kraken), Serve deployed from serveConfigV2; every check must pass. Mid-way
through the backfill the node holding the stage actors is lost: the actors run again on the other
stages node, and the tables equal what a clean run computes from the same trades."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptopred.rehearsal.checks import Check
from cryptopred.rehearsal.cluster import Options
from cryptopred.rehearsal.faults import NodeFailure
from cryptopred.rehearsal.manifest import read_plan
from cryptopred.rehearsal.run import generated_secrets, render_overlay, run
from cryptopred_core import topics
from cryptopred_core.db import connect, fetch_all
from cryptopred_core.records import Trade
from cryptopred_core.settings import Settings
from cryptopred_testsupport.fake_kraken import FakeKraken
from cryptopred_testsupport.serving import read_records
from cryptopred_testsupport.streams import (
    candle_tuples,
    indicator_mismatches,
    indicator_rows,
    reference_candles,
    reference_tuples,
)

# ~10 minutes on 2 cores: outside `make test` (and CI's 40 minutes); `make test-rehearsal`
pytestmark = [pytest.mark.integration, pytest.mark.rehearsal]

ROOT = Path(__file__).resolve().parents[3]
PAIRS = ["BTC/USD", "ETH/USD"]
TAPE_HOURS = 23  # ~1380 one-minute candles per pair: the 60-candle indicators' warm-up < 5 %
STEP_MS = 30_000
PAGE_SIZE = 100

#: the reduced size, added to every pod's env: one Train worker, few epochs, no REST pacing
REDUCED = {
    "CRYPTOPRED_TRAIN_WORKERS": "1",
    "CRYPTOPRED_TRAIN_WINDOW_STEPS": "24",
    "CRYPTOPRED_TRAIN_BATCH_SIZE": "64",
    "CRYPTOPRED_TRAIN_MAX_EPOCHS": "3",
    "CRYPTOPRED_TRAIN_WALK_FORWARD_FOLDS": "1",
    "CRYPTOPRED_TRAIN_WALK_FORWARD_MAX_EPOCHS": "0",
    "CRYPTOPRED_TRAIN_CPUS_PER_WORKER": "1",
    # paced backfill pages (of PAGE_SIZE trades): trades still flow when the node is lost
    "CRYPTOPRED_REST_MIN_INTERVAL_S": "0.5",
    "CRYPTOPRED_REST_PAGE_SIZE": str(PAGE_SIZE),
}


@pytest.fixture
def workdir() -> Iterator[Path]:
    """Outside pytest's temp root: pytest sessions started meanwhile reset that root to mode
    0700, which PostgreSQL's own user (the stand-in runs it as one) then cannot traverse."""
    path = Path(tempfile.mkdtemp(prefix="cryptopred-rehearsal-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def kraken() -> Iterator[FakeKraken]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (make system-deps): the overlay cannot be rendered")
    tape_size = TAPE_HOURS * 3600 * 1000 // STEP_MS
    fake = FakeKraken(
        PAIRS,
        tape_size=tape_size,
        base_ts_ns=time.time_ns() - TAPE_HOURS * 3600 * 1_000_000_000,
        step_ms=STEP_MS,
        segments=[(0, 0, "idle")],
        rest_by_time=True,
        page_size=PAGE_SIZE,
        rate_limit_every=0,
    ).start()
    yield fake
    fake.stop()


def tables_equal_a_clean_run(settings: Settings) -> list[Check]:
    """`candles` and `technical_indicators` against the pandas and batch TA-Lib references of
    the trades in the `trades` topic (what an uninterrupted run computes from them), up to
    the last closed window of each pair."""
    trades: dict[str, dict[int, Trade]] = {}
    for trade in read_records(settings, topics.TRADES, Trade):
        trades.setdefault(trade.pair, {}).setdefault(trade.trade_id, trade)
    out = []
    with connect(settings.db_url) as conn:
        for pair, by_id in sorted(trades.items()):
            ref = reference_candles(list(by_id.values()), 60)[:-2]  # the last may be open
            last = int(ref["window_start_ms"].iloc[-1])
            rows = fetch_all(
                conn,
                "SELECT * FROM candles WHERE pair = %s AND candle_seconds = 60 "
                "AND window_start_ms <= %s AND final ORDER BY window_start_ms",
                (pair, last),
            )
            same = candle_tuples(rows) == reference_tuples(ref)
            out.append(Check(f"candles {pair} = clean run", same, f"{len(rows)}/{len(ref)} rows"))
            bad = indicator_mismatches(indicator_rows(conn, pair, 60, ref), ref)
            out.append(Check(f"indicators {pair} = batch TA-Lib", not bad, ", ".join(bad[:5])))
    return out


@pytest.mark.timeout(1200)
def test_dev_overlay_rehearsal(
    kraken: FakeKraken, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRYPTOPRED_KRAKEN_REST_URL", kraken.rest_url)
    monkeypatch.setenv("CRYPTOPRED_KRAKEN_WS_URL", kraken.ws_url)
    docs = render_overlay("dev", ROOT)
    plan = read_plan(docs, generated_secrets(docs))

    def say(line: str) -> None:
        print(line, flush=True)

    options = Options(
        "dev",
        workdir / "rehearsal",
        REDUCED,
        job_timeout_s=420,
        serve_timeout_s=240,
        node_failure=NodeFailure(after_s=10, down_s=60),
        extra_checks=tables_equal_a_clean_run,
    )
    outcome = run(options, docs, say=say)
    failed = [c for c in outcome.checks if not c.ok]
    assert not failed, "\n".join(f"{c.name}: {c.detail}" for c in failed)
    # one row per Ray pod of the overlay (the retraining run's own head too), each measured
    pods = [p.name for c in plan.clusters for p in c.pods]
    assert [u.pod for u in outcome.usage] == pods
    assert all(u.peak_pss_bytes > 0 and u.cpu_s > 0 for u in outcome.usage)
    assert kraken.rest_calls > 0  # the backfill read the exchange the settings name
    names = [c.name for c in outcome.checks]
    assert "node failure (cryptopred-worker-stages-0)" in names or (
        "node failure (cryptopred-worker-stages-1)" in names
    )
    assert sum(n.startswith(("candles ", "indicators ")) for n in names) == 2 * len(PAIRS)
    (killed,) = [u for u in outcome.usage if u.restarts]  # the lost node's pod, replaced
    assert killed.pod.startswith("cryptopred-worker-stages-")
    enforced = os.access("/sys/fs/cgroup/memory", os.W_OK)
    assert all(u.enforced == enforced for u in outcome.usage)
    assert not any(u.overridden for u in outcome.usage)  # the manifests' own limits
