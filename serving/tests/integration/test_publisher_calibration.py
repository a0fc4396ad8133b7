"""The publisher's outcomes carry pinball losses (its own and the baseline's for the same
window) and feed the calibration monitor, whose demotion goes to `demote` (stage level, real
PostgreSQL, no Ray)."""

from __future__ import annotations

import pytest

from cryptopred_core import tables, topics
from cryptopred_core.db import connect, fetch_all, upsert
from cryptopred_core.pipeline.stage import Emit, Inbound
from cryptopred_core.records import encode
from cryptopred_serving import queries
from cryptopred_serving.backend import live_metric
from cryptopred_serving.calibration import CalibrationMonitor, DemotionPolicy
from cryptopred_serving.champion_watch import Champion
from cryptopred_serving.outcomes import pinball_price
from cryptopred_serving.publisher import PublisherStage
from cryptopred_serving.schemas import LiveMetric
from cryptopred_testsupport.serving import rows_of

pytestmark = pytest.mark.integration

NOW_MS = 1_800_000_000_000
TAGS = {"window_steps": "4", "horizon_seconds": "60,120", "model_kind": "transformer"}
CHAMPION = Champion("CAL-USD-60s", "1", None, TAGS)
BASELINE = Champion("CAL-USD-60s", "2", None, {**TAGS, "model_kind": "baseline"})
WIDTH = {"1": 0.2, "2": 0.002}  # the champion's band is far too wide, the baseline's right-ish


def fake_predict(champion, window):
    assert len(window) == champion.window_steps + 1
    last = window[-1]
    width = WIDTH[champion.version]
    return [
        {
            "horizon_seconds": h,
            "window_end_ms": last["window_end_ms"],
            "target_ts_ms": last["window_end_ms"] + h * 1000,
            "predicted_close": last["close"],
            "predicted_return": 0.0,
            "lower": last["close"] * (1 - width),
            "upper": last["close"] * (1 + width),
        }
        for h in (60, 120)
    ]


def feed(stage, rows):
    out = Emit()
    for i, row in enumerate(rows):
        message = Inbound(topics.TECHNICAL_INDICATORS, 0, i, None, encode(row), 0)
        stage.handle(message, NOW_MS, out)
    return out


def test_outcomes_score_champion_and_baseline_and_a_bad_champion_is_demoted(postgres):
    from cryptopred_training.synthetic import synthetic_indicator_frame

    pair = "CAL/USD"
    rows = rows_of(synthetic_indicator_frame(60, pair=pair, seed=11))
    conn = connect(postgres.db_url, autocommit=True)
    upsert(conn, tables.TECHNICAL_INDICATORS, rows[:10], "postgres")
    demoted = []
    # coverage is not judged (the band is 0-1); the skill must stay negative for 10 candles
    policy = DemotionPolicy(
        coverage_low=0.0, coverage_high=1.0, after_s=600, min_outcomes=20, window_outcomes=40
    )
    monitor = CalibrationMonitor(policy)
    stage = PublisherStage(
        postgres.db_url,
        {(pair, 60)},
        lambda p, c: CHAMPION,
        fake_predict,
        baseline_of=lambda p, c: BASELINE,
        monitor=monitor,
        demote=demoted.append,
    )
    out = feed(stage, rows[10:])
    outcomes = out.rows[tables.PREDICTION_OUTCOMES]
    assert len(outcomes) == 50 * 2 - 3  # every prediction whose target row came
    closes = {r.window_end_ms: r.close for r in rows}
    for o in outcomes:
        base = closes[o.window_end_ms]
        mine = pinball_price(base * 0.8, base, base * 1.2, o.actual_close)
        theirs = pinball_price(base * 0.998, base, base * 1.002, o.actual_close)
        assert o.pinball_loss == pytest.approx(mine)
        assert o.baseline_pinball_loss == pytest.approx(theirs)
        assert o.baseline_version == "2"
    # the wide band loses to the baseline in pinball at every outcome: demoted once, on skill
    assert len(demoted) == 1 and demoted[0].model_version == "1"
    assert "skill" in demoted[0].reason
    # decided once the skill had been significantly negative for after_s, not at once
    first_ms = min(o.target_ts_ms for o in outcomes if o.horizon_seconds == 60)
    assert demoted[0].decided_at_ms >= first_ms + (20 - 1 + 10) * 60_000
    assert stage.demotions == demoted

    upsert(conn, tables.PREDICTION_OUTCOMES, outcomes, "postgres")
    stored = fetch_all(
        conn,
        "SELECT count(baseline_pinball_loss) AS n, min(baseline_version) AS v "
        "FROM prediction_outcomes WHERE pair = %s",
        (pair,),
    )
    assert stored == [{"n": len(outcomes), "v": "2"}]
    live = [live_metric(r) for r in queries.live_metrics(conn, pair, 0)]
    assert [(m["model_version"], m["horizon_seconds"], m["n"]) for m in live] == [
        ("1", 60, 49),
        ("1", 120, 48),
    ]
    for metric in live:
        mine = [o for o in outcomes if o.horizon_seconds == metric["horizon_seconds"]]
        ours = sum(o.pinball_loss for o in mine)
        theirs = sum(o.baseline_pinball_loss for o in mine)
        assert metric["pinball_loss"] == pytest.approx(ours / len(mine))
        assert metric["baseline_pinball_loss"] == pytest.approx(theirs / len(mine))
        assert metric["skill"] == pytest.approx(1 - ours / theirs) and metric["skill"] < 0
        assert metric["baseline_n"] == len(mine) and metric["interval_coverage"] == 1.0
        LiveMetric(**metric)  # the API's schema takes it
    stage.close()
    conn.close()


def test_without_the_window_in_memory_or_with_the_baseline_serving_no_baseline_loss(postgres):
    from cryptopred_training.synthetic import synthetic_indicator_frame

    pair = "CAM/USD"
    rows = rows_of(synthetic_indicator_frame(30, pair=pair, seed=12))
    conn = connect(postgres.db_url, autocommit=True)
    upsert(conn, tables.TECHNICAL_INDICATORS, rows[:10], "postgres")
    # the baseline needs more rows than the publisher keeps: its window is never in memory
    deep = Champion("CAM-USD-60s", "2", None, {**TAGS, "window_steps": "50"})
    stage = PublisherStage(
        postgres.db_url,
        {(pair, 60)},
        lambda p, c: CHAMPION,
        fake_predict,
        history_rows=20,
        baseline_of=lambda p, c: deep,
    )
    outcomes = feed(stage, rows[10:]).rows[tables.PREDICTION_OUTCOMES]
    assert outcomes and all(o.baseline_pinball_loss is None for o in outcomes)
    assert all(o.pinball_loss is not None for o in outcomes)
    # the champion is the baseline: nothing to compare with
    same = PublisherStage(
        postgres.db_url,
        {("CAN/USD", 60)},
        lambda p, c: BASELINE,
        fake_predict,
        baseline_of=lambda p, c: BASELINE,
    )
    rows = rows_of(synthetic_indicator_frame(20, pair="CAN/USD", seed=13))
    upsert(conn, tables.TECHNICAL_INDICATORS, rows[:6], "postgres")
    outcomes = feed(same, rows[6:]).rows[tables.PREDICTION_OUTCOMES]
    assert outcomes and all(o.baseline_version is None for o in outcomes)
    stage.close()
    same.close()
    conn.close()
