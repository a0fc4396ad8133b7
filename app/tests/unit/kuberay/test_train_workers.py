"""The training worker count on the cluster comes from CRYPTOPRED_TRAIN_WORKERS (TrainSettings)."""

from __future__ import annotations

import re

import pytest

from cryptopred_core.settings import ENV_PREFIX
from cryptopred_testsupport.kuberay.render import OVERLAYS, make_kuberay, of_kind, one, render
from cryptopred_training.settings import TrainSettings


def _submit_train(*args: str) -> str:
    done = make_kuberay("-n", "submit-train", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_submit_train_leaves_the_worker_count_to_the_settings() -> None:
    assert "cryptopred train --pair" in _submit_train()
    assert "--workers" not in _submit_train()
    assert re.search(r"cryptopred train --pair .* --workers 3\b", _submit_train("TRAIN_WORKERS=3"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_cluster_env_sets_the_training_workers(overlay: str) -> None:
    docs = render(overlay)
    env = one(docs, "ConfigMap", "cryptopred-env")["data"]
    fields = {key.removeprefix(ENV_PREFIX).lower(): value for key, value in env.items()}
    workers = TrainSettings(**fields).train_workers
    assert env["CRYPTOPRED_TRAIN_WORKERS"] == str(workers)
    # Jobs on the pipeline's RayCluster (submit-train, the RayCronJob) run with its head's env.
    (cluster,) = of_kind(docs, "RayCluster")
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"configMapRef": {"name": "cryptopred-env"}} in head["envFrom"]
    assert all(e["name"] != "CRYPTOPRED_TRAIN_WORKERS" for e in head.get("env", []))
    # The retrain script does not override the setting.
    script = one(docs, "ConfigMap", "cryptopred-scripts")["data"]["retrain.sh"]
    assert "CRYPTOPRED_TRAIN_WORKERS" not in script
    assert "--workers" not in script
