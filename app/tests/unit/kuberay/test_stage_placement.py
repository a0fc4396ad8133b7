"""Where the stream's stage actors run on the cluster: on the pipeline's `stages` worker group,
on two nodes or more, each with room for all of them, so a lost node leaves a place to restart
its actors at once."""

from __future__ import annotations

import pytest

from cryptopred_core.raycluster import one_unit_of
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_testsupport.kuberay.render import (
    OVERLAYS,
    configmap_settings,
    groups_offering,
    offered_resources,
    one,
    ray_groups,
    render,
)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stage_actors_run_on_the_stages_group_of_two_nodes_each_holding_all(
    overlay: str,
) -> None:
    docs = render(overlay)
    settings = configmap_settings(docs, StreamSettings)
    asked = one_unit_of(settings.stage_resource)
    assert asked, "the ConfigMap names no stage resource: stage actors could land anywhere"
    ((resource, per_actor),) = asked.items()
    ((cluster, group_name, group, replicas),) = groups_offering(docs, resource)
    assert (cluster, group_name) == ("cryptopred", "stages")
    assert replicas >= 2 and group.get("minReplicas") == replicas
    actors = settings.candle_replicas + settings.indicator_replicas + settings.sink_replicas
    offered = offered_resources(group)
    assert offered[resource] >= actors * per_actor  # one node holds every stage actor
    # the actors reserve no more CPU than a stages pod offers Ray
    assert actors * settings.actor_num_cpus <= offered.get("CPU", 0)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stages_pods_reach_the_services_the_stage_actors_use(overlay: str) -> None:
    docs = render(overlay)
    pipeline = one(docs, "RayCluster", "cryptopred")
    (stages,) = [g for name, g, _ in ray_groups(pipeline["spec"]) if name == "stages"]
    (container,) = stages["template"]["spec"]["containers"]
    assert {"configMapRef": {"name": "cryptopred-env"}} in container["envFrom"]
    head_labels = pipeline["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]
    # the network policies that let the head reach Kafka and the DB select these pods too
    assert stages["template"]["metadata"]["labels"] == head_labels


@pytest.mark.parametrize(
    ("overlay", "kind", "cluster", "group"),
    [
        ("dev", "RayCluster", "cryptopred", "stages"),
        ("prod", "RayCluster", "cryptopred", "stages"),
        ("prod", "RayService", "cryptopred-serve", "serve"),
    ],
)
def test_the_spare_pods_prefer_different_nodes(
    overlay: str, kind: str, cluster: str, group: str
) -> None:
    obj = one(render(overlay), kind, cluster)
    spec = obj["spec"].get("rayClusterConfig", obj["spec"])
    (found,) = [g for name, g, _ in ray_groups(spec) if name == group]
    terms = found["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    term = terms[0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    # KubeRay's own pod labels: the group's pods, and only them
    assert term["labelSelector"]["matchLabels"] == {
        "ray.io/cluster": cluster,
        "ray.io/group": group,
    }
