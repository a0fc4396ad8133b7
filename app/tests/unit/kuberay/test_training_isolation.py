"""Retraining runs on a Ray cluster of its own, never on the pipeline's RayCluster where the
stream stages and the live source run, with memory from the measured peaks."""

from __future__ import annotations

import pytest

from cryptopred_testsupport.kuberay.checks import training_problems
from cryptopred_testsupport.kuberay.render import (
    OVERLAYS,
    RETRAIN_HEADROOM,
    RETRAIN_PEAK_MEM,
    Obj,
    configmap_settings,
    job_cluster_pod,
    memory,
    of_kind,
    offered_resources,
    one,
    pod_specs,
    ray_groups,
    render,
)
from cryptopred_training.settings import TrainSettings


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_retraining_never_runs_on_the_pipeline_cluster(overlay: str) -> None:
    docs = render(overlay)
    cron = one(docs, "RayCronJob", "retrain")
    assert cron["metadata"]["labels"]["app.kubernetes.io/component"] == "training"
    assert training_problems(docs) == []
    # Its pods are its own: none is the pipeline head or a stream job's.
    wheres = [where for where, _, _ in pod_specs(cron)]
    assert [w for w in wheres if job_cluster_pod(w)] == ["RayCronJob retrain head"]
    head = cron["spec"]["jobTemplate"]["rayClusterSpec"]["headGroupSpec"]["template"]
    assert head["metadata"]["labels"]["app.kubernetes.io/component"] == "training"
    pipeline = one(docs, "RayCluster", "cryptopred")
    pipeline_head = pipeline["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]
    assert pipeline_head["app.kubernetes.io/component"] == "pipeline"
    # No pod of the pipeline cluster offers Ray a CPU, so no training task (it asks for CPUs)
    # could be placed there, and the jobs that select it (stream, backfill) do not train.
    groups = list(ray_groups(pipeline["spec"]))
    assert len(groups) > 1  # the head and the stages group
    assert all(offered_resources(g).get("CPU") == 0 for _, g, _ in groups), groups
    for job in of_kind(docs, "RayJob"):
        if "clusterSelector" in job["spec"]:
            assert "train" not in job["spec"]["entrypoint"].split()[:3], job["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_retraining_head_has_memory_for_the_measured_peak(overlay: str) -> None:
    docs = render(overlay)
    workers = configmap_settings(docs, TrainSettings).train_workers
    peak = RETRAIN_PEAK_MEM[workers]
    cron = one(docs, "RayCronJob", "retrain")
    pod = cron["spec"]["jobTemplate"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    (container,) = pod["containers"]
    resources = container["resources"]
    assert memory(resources["requests"]["memory"]) >= peak, (workers, resources)
    assert memory(resources["limits"]["memory"]) >= peak * RETRAIN_HEADROOM, (workers, resources)
    # the run reads the same settings and the same script as before
    assert {"configMapRef": {"name": "cryptopred-env"}} in container["envFrom"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    script = cron["spec"]["jobTemplate"]["entrypoint"].split()[-1]
    assert script.startswith(mounts["scripts"] + "/")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_retraining_run_ends_before_the_next_slot(overlay: str) -> None:
    docs = render(overlay)
    every_s = configmap_settings(docs, TrainSettings).retrain_every_s
    deadline_s = one(docs, "RayCronJob", "retrain")["spec"]["jobTemplate"]["activeDeadlineSeconds"]
    assert every_s is not None and 0 < deadline_s < every_s


def test_training_problems_names_a_job_on_the_pipeline_cluster() -> None:
    job: Obj = {
        "kind": "RayJob",
        "metadata": {"name": "t", "labels": {"app.kubernetes.io/component": "training"}},
        "spec": {"clusterSelector": {"ray.io/cluster": "cryptopred"}, "entrypoint": "x"},
    }
    found = training_problems([job])
    assert any("selects the running cluster" in p for p in found)
    assert any("no cluster of its own" in p for p in found)
    assert any("outlives the run" in p for p in found)
