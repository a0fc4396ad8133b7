"""The demo's settings and its status view, rendered from a hand-made snapshot."""

import logging

import pytest
from rich.console import Console

from cryptopred.demo.settings import DemoSettings, load_demo_settings
from cryptopred.demo.view import PairView, Snapshot, render
from cryptopred_core.settings import SettingsError

TS = 1_795_669_080_000  # 2026-11-26 04:58:00 UTC


def test_settings_defaults_env_and_one_line_errors(monkeypatch):
    settings = DemoSettings()
    assert settings.demo_source == "kraken" and settings.history_days == 1.0
    assert settings.demo_pairs == ["BTC/USD", "ETH/USD"]
    monkeypatch.setenv("CRYPTOPRED_DEMO_SOURCE", "synthetic")
    monkeypatch.setenv("CRYPTOPRED_DEMO_PAIRS", "sol-usd, xrp/eur")
    settings = load_demo_settings()
    assert settings.history_days == 7.0 and settings.demo_pairs == ["SOL/USD", "XRP/EUR"]
    with pytest.raises(SettingsError, match="CRYPTOPRED_DEMO_SOURCE"):
        load_demo_settings(demo_source="binance")
    with pytest.raises(SettingsError, match="CRYPTOPRED_DEMO_PAIRS"):
        load_demo_settings(demo_pairs="BTCUSD")
    with pytest.raises(SettingsError, match="CRYPTOPRED_DEMO_MOMENTUM"):
        load_demo_settings(demo_momentum=1.5)


def _text(snapshot: Snapshot) -> str:
    console = Console(width=260, record=True)
    console.print(render(snapshot))
    return console.export_text()


def test_render_shows_stages_pairs_forecasts_and_urls():
    snapshot = Snapshot(
        taken_ms=TS,
        stages=[
            {
                "actor": "stream-candles-0",
                "restarts": 1_234,
                "consumed": 182_305,
                "consumed_per_s": 641.4,
                "lag_total": 12,
                "dead": 3,
                "last_event_ms": TS,
            },
            {"actor": "stream-sink-0", "error": "GetTimeoutError: no answer"},
            {
                "actor": "stream-indicators-0",
                "error": "GetTimeoutError: no answer",
                "restarts": 3,
                "last_error": "OperationalError: the DB went away",
            },
        ],
        pairs=[
            PairView(
                "BTC/USD",
                last_candle={"window_start_ms": TS, "close": 95657.1, "final": False},
                champion="BTC-USD-60s v2",
                live=[
                    {"horizon_seconds": 300, "mae": 9.0, "persistence_mae": 9.5, "n": 4},
                    {"horizon_seconds": 60, "mae": 1.25, "persistence_mae": 1.5, "n": 40},
                ],
                prediction={
                    "predicted_close": 95700.0,
                    "lower": 95600.0,
                    "upper": 95800.0,
                    "horizon_seconds": 60,
                    "target_ts_ms": TS + 120_000,
                },
                retrain={
                    "last": {"decision": "challenger", "version": "3", "trigger": "schedule"},
                    "next_due_ms": TS + 120 * 60_000,
                    "running_since_ms": None,
                },
            ),
            PairView(
                "ETH/USD",
                retrain={"last": None, "next_due_ms": TS, "running_since_ms": TS - 5_000},
            ),
        ],
        urls={"API": "http://127.0.0.1:8000/v1/predictions/BTC-USD"},
    )
    text = _text(snapshot)
    assert "stream-candles-0" in text and "182,305" in text and "641" in text
    assert "2026-11-26 04:58:00" in text
    assert "GetTimeoutError" in text
    assert "1,234" in text  # restarts
    assert "OperationalError: the DB went away" in text  # a down actor's last error
    assert "BTC-USD-60s v2" in text and "none yet" in text  # ETH has no champion
    assert "1.25 (40 @ 60s)" in text and "1.5" in text  # the shortest horizon's live MAE
    assert "95700 [95600, 95800] +60s at 2026-11-26 05:00:00" in text
    assert "open" in text
    assert "http://127.0.0.1:8000/v1/predictions/BTC-USD" in text
    assert "challenger v3 (schedule), next in 120 min" in text
    assert "not yet, training now" in text


def test_the_demo_retrains_by_default_and_keeps_a_choice(monkeypatch):
    from cryptopred.demo.flow import Demo

    monkeypatch.delenv("CRYPTOPRED_RETRAIN_EVERY", raising=False)
    assert Demo(DemoSettings(), lambda _: None).train.retrain_every_s == 6 * 3600
    monkeypatch.setenv("CRYPTOPRED_RETRAIN_EVERY", "off")
    assert Demo(DemoSettings(), lambda _: None).train.retrain_every_s is None
    monkeypatch.setenv("CRYPTOPRED_RETRAIN_EVERY", "30m")
    assert Demo(DemoSettings(), lambda _: None).train.retrain_every_s == 1800


def test_kraken_demo_offline_fails_in_seconds_naming_the_way_out():
    import time

    from cryptopred.demo.flow import Demo, DemoError
    from cryptopred_core.ports import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    demo = Demo(
        DemoSettings(demo_source="kraken"), lambda _: None, {"ingest": {"kraken_rest_url": closed}}
    )
    started = time.monotonic()
    with pytest.raises(DemoError, match="SOURCE=synthetic") as caught:
        demo._backfill(now_ms=1_795_669_080_000, days=1.0)
    assert closed in str(caught.value) and "\n" not in str(caught.value)
    assert time.monotonic() - started < 15


def test_sigterm_stops_the_demo_like_ctrl_c():
    import os
    import signal
    import time

    from cryptopred.demo.cli import stop_on_sigterm

    previous = signal.getsignal(signal.SIGTERM)
    try:
        stop_on_sigterm()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at the latest here
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_serve_info_lines_stay_off_the_terminal():
    """ray.serve's import sets its logger to INFO: the demo's setting must outlast it (a fresh
    process, where nothing has imported ray.serve yet)."""
    import subprocess
    import sys

    code = (
        "import logging\n"
        "from cryptopred.demo.cli import quiet_serve_logs\n"
        "quiet_serve_logs()\n"
        "import ray.serve\n"
        "print(logging.getLogger('ray.serve').getEffectiveLevel())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split()[-1] == str(logging.WARNING)
