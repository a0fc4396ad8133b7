"""The RayCronJob retrains alike the embedded scheduler: one schedule, one window, one command."""

from __future__ import annotations

import re

import pytest

from cryptopred_testsupport.kuberay.render import OVERLAYS, Obj, one, render
from cryptopred_training.retrain.schedule import cron_schedule, parse_duration_s, parse_every_s

UTC_ZONES = ("UTC", "Etc/UTC")
# The command on a line of its own (a closed descriptor such as `9>&-` may follow).
RETRAIN_ONCE = re.compile(r"^\s*(exec\s+)?cryptopred retrain once(\s+\d*[<>]&-)*\s*$", re.MULTILINE)


def schedule_problems(env: dict[str, str], cron: Obj, script: str) -> list[str]:
    """What keeps the RayCronJob from retraining as CRYPTOPRED_RETRAIN_EVERY/_WINDOW say."""
    problems = []
    every = env.get("CRYPTOPRED_RETRAIN_EVERY")
    try:
        every_s = parse_every_s(every) if every is not None else None
        expected = cron_schedule(every_s) if every_s is not None else None
    except ValueError as exc:
        problems.append(f"CRYPTOPRED_RETRAIN_EVERY={every!r}: {exc}")
    else:
        if expected is None:
            problems.append(f"CRYPTOPRED_RETRAIN_EVERY={every!r} leaves retraining off")
        elif cron["spec"]["schedule"] != expected:
            problems.append(
                f"spec.schedule {cron['spec']['schedule']!r} != {expected!r} "
                f"(`cryptopred retrain cron` of {every})"
            )
    window = env.get("CRYPTOPRED_RETRAIN_WINDOW")
    try:
        parse_duration_s(window if window is not None else "")
    except ValueError as exc:
        problems.append(f"CRYPTOPRED_RETRAIN_WINDOW={window!r}: {exc}")
    if cron["spec"].get("timeZone") not in UTC_ZONES:
        problems.append(f"spec.timeZone {cron['spec'].get('timeZone')!r} is not UTC")
    if not RETRAIN_ONCE.search(script):
        problems.append("the retrain script does not run `cryptopred retrain once`")
    return problems


def _parts(overlay: str) -> tuple[dict[str, str], Obj, str]:
    docs = render(overlay)
    env = one(docs, "ConfigMap", "cryptopred-env")["data"]
    cron = one(docs, "RayCronJob", "retrain")
    script_name = cron["spec"]["jobTemplate"]["entrypoint"].split()[-1].rsplit("/", 1)[-1]
    script = one(docs, "ConfigMap", "cryptopred-scripts")["data"][script_name]
    return env, cron, script


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_raycronjob_retrains_as_the_retrain_settings_say(overlay: str) -> None:
    env, cron, script = _parts(overlay)
    assert not schedule_problems(env, cron, script)
    # The values the README documents.
    assert (env["CRYPTOPRED_RETRAIN_EVERY"], env["CRYPTOPRED_RETRAIN_WINDOW"]) == ("6h", "7d")
    assert cron["spec"]["schedule"] == "0 */6 * * *"
    assert parse_duration_s(env["CRYPTOPRED_RETRAIN_WINDOW"]) == 7 * 86_400


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_retrain_script_runs_where_the_settings_are(overlay: str) -> None:
    docs = render(overlay)
    cron = one(docs, "RayCronJob", "retrain")
    # each run's own cluster (rayClusterSpec) reads the settings
    cluster = cron["spec"]["jobTemplate"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    sources = [s["configMapRef"]["name"] for s in head.get("envFrom", []) if "configMapRef" in s]
    assert "cryptopred-env" in sources
    _, _, script = _parts(overlay)
    assert "cryptopred train " not in script  # no per-pair loop: `retrain once` runs them


def test_schedule_check_catches_each_drift() -> None:
    env, cron, script = _parts("dev")
    spec = cron["spec"]
    cases: list[tuple[dict[str, str], Obj, str, str]] = [
        ({**env, "CRYPTOPRED_RETRAIN_EVERY": "4h"}, cron, script, "spec.schedule"),
        ({**env, "CRYPTOPRED_RETRAIN_EVERY": "off"}, cron, script, "leaves retraining off"),
        ({**env, "CRYPTOPRED_RETRAIN_EVERY": "5h"}, cron, script, "no cron can run it"),
        (env, {**cron, "spec": {**spec, "schedule": "0 */4 * * *"}}, script, "spec.schedule"),
        ({**env, "CRYPTOPRED_RETRAIN_WINDOW": "a week"}, cron, script, "RETRAIN_WINDOW"),
        ({**env, "CRYPTOPRED_RETRAIN_WINDOW": "0d"}, cron, script, "RETRAIN_WINDOW"),
        (env, {**cron, "spec": {**spec, "timeZone": "Europe/Berlin"}}, script, "timeZone"),
        (env, {**cron, "spec": {k: v for k, v in spec.items() if k != "timeZone"}}, script, "UTC"),
        (env, cron, script.replace("retrain once", "train"), "retrain once"),
        (env, cron, "# cryptopred retrain once\n", "retrain once"),
        (env, cron, 'echo "cryptopred retrain once"\n', "retrain once"),
    ]
    for broken_env, broken_cron, broken_script, expected in cases:
        problems = schedule_problems(broken_env, broken_cron, broken_script)
        assert len(problems) == 1 and expected in problems[0], (expected, problems)
