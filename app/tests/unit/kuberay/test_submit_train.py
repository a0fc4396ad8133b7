"""`make submit-train` trains by hand where the scheduled runs train: a one-off RayJob made from
the RayCronJob's template (kuberay/oneoff_job.py), on a cluster of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from types import ModuleType

import pytest

from cryptopred_testsupport.kuberay.checks import training_problems
from cryptopred_testsupport.kuberay.render import KUBERAY, OVERLAYS, make_kuberay, one, render
from cryptopred_testsupport.scripts import load_script


def _script() -> ModuleType:
    return load_script(KUBERAY / "oneoff_job.py")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_one_off_job_is_the_cron_template_with_the_entrypoint(overlay: str) -> None:
    docs = render(overlay)
    cron = one(docs, "RayCronJob", "retrain")
    job = _script().one_off_job(cron, "cryptopred train --pair BTC/USD && true")
    assert job["kind"] == "RayJob" and job["metadata"]["generateName"] == "train-"
    assert job["spec"]["entrypoint"] == "cryptopred train --pair BTC/USD && true"
    template = cron["spec"]["jobTemplate"]
    assert job["spec"]["rayClusterSpec"] == template["rayClusterSpec"]
    assert job["spec"]["deletionStrategy"] == template["deletionStrategy"]
    assert job["spec"]["activeDeadlineSeconds"] == template["activeDeadlineSeconds"]
    assert "clusterSelector" not in job["spec"]
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "training"
    # the isolation rules of the scheduled runs hold for it too
    assert training_problems([*docs, job]) == []


def test_the_script_reads_the_cron_job_and_writes_the_job() -> None:
    cron = one(render("dev"), "RayCronJob", "retrain")
    done = subprocess.run(
        [sys.executable, str(KUBERAY / "oneoff_job.py"), "--", "cryptopred train --pair X"],
        input=json.dumps(cron),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["spec"]["entrypoint"] == "cryptopred train --pair X"
    with pytest.raises(ValueError, match="expected a RayCronJob"):
        _script().one_off_job({"kind": "RayJob"}, "x")


def test_make_submit_train_creates_the_job_from_the_cron_job() -> None:
    done = make_kuberay("-n", "submit-train", "TRAIN_PAIRS=BTC/USD ETH/USD")
    assert done.returncode == 0, done.stderr
    assert "get raycronjob retrain -o json" in done.stdout
    assert "oneoff_job.py -- 'cryptopred train --pair BTC/USD" in done.stdout
    assert "&& cryptopred train --pair ETH/USD" in done.stdout
    assert "create -f -" in done.stdout and "ray job submit" not in done.stdout
