"""Prod pods that run our images pull them with the registry Secret the user creates."""

from __future__ import annotations

import re

from cryptopred_testsupport.kuberay.render import KUBERAY, containers, of_kind, pod_specs, render

OUR_IMAGE = re.compile(r"(^|/)cryptopred-(ray|mlflow)[:@]")
PULL_SECRET = "cryptopred-registry"


def _pods_with_our_images(overlay: str) -> list[tuple[str, list[dict[str, str]] | None]]:
    found = []
    for obj in render(overlay):
        for where, pod, _ in pod_specs(obj):
            if any(OUR_IMAGE.search(c["image"]) for c in containers(pod)):
                found.append((where, pod.get("imagePullSecrets")))
    return found


def test_prod_pods_of_our_images_name_the_pull_secret() -> None:
    pods = _pods_with_our_images("prod")
    wheres = {where for where, _ in pods}
    # every kind of pod that runs them: Ray heads, the Serve workers, job submitters, MLflow
    assert {"Deployment mlflow", "RayCluster cryptopred head"} <= wheres
    assert "RayService cryptopred-serve worker serve" in wheres
    assert "RayJob stream submitter" in wheres and "RayCronJob retrain submitter" in wheres
    missing = [where for where, secrets in pods if secrets != [{"name": PULL_SECRET}]]
    assert not missing, missing
    # the Secret's value never comes from the repository
    assert not [
        s for s in of_kind(render("prod"), "Secret") if s["metadata"]["name"] == PULL_SECRET
    ]
    assert PULL_SECRET in (KUBERAY / "README.md").read_text()


def test_dev_pods_use_the_images_loaded_into_kind() -> None:
    pods = _pods_with_our_images("dev")
    assert pods and all(secrets is None for _, secrets in pods)
