"""Who may reach MLflow, the Ray dashboard and job API, Serve, Grafana and kafka-ui.

The rendered NetworkPolicies are evaluated offline (cryptopred_testsupport.kuberay.netpol) for
every pod of the overlay plus pods outside it: the KubeRay operator, the Prometheus add-on,
an ingress controller whose namespace opts in, a stranger in another namespace and an
unlabelled pod started in this namespace.
"""

from __future__ import annotations

import pytest

from cryptopred_testsupport.kuberay.netpol import (
    Pod,
    find,
    ingress_allowed,
    pods_of,
    policies_of,
    selecting_policies,
)
from cryptopred_testsupport.kuberay.render import OVERLAYS, Obj, of_kind, render, risingwave_values

OPERATOR_NAMESPACE = "kuberay-system"  # KUBERAY_NAMESPACE of kuberay/Makefile.mk
INGRESS_NAMESPACE_LABEL = {"cryptopred.io/ingress": "true"}
SUBMITTERS = {"submitter-stream", "submitter-backfill", "submitter-retrain"}


def _sources(overlay: str) -> tuple[dict[str, Pod], list[Pod]]:
    docs = render(overlay)
    pods = pods_of(docs, risingwave_values(overlay)["standalone"]["podLabels"])
    named = {
        "pipeline-head": find(pods, "RayCluster cryptopred head"),
        "serve-head": find(pods, "RayService cryptopred-serve head"),
        "submitter-stream": find(pods, "RayJob stream submitter"),
        "submitter-backfill": find(pods, "RayJob backfill submitter"),
        "submitter-retrain": find(pods, "RayCronJob retrain submitter"),
        "risingwave": find(pods, "RisingWave"),
        "operator": Pod(
            "operator", {"app.kubernetes.io/name": "kuberay-operator"}, OPERATOR_NAMESPACE
        ),
        "prometheus": Pod("prometheus add-on", {"app.kubernetes.io/name": "prometheus"}),
        "ingress": Pod(
            "ingress controller",
            {"app.kubernetes.io/name": "ingress-nginx"},
            "ingress-nginx",
            INGRESS_NAMESPACE_LABEL,
        ),
        "stranger": Pod("stranger", {"app": "x"}, "default"),
        "namespace-pod": Pod("kubectl run in the namespace", {"run": "shell"}),
    }
    for kind in ("Deployment", "StatefulSet", "Job"):
        for obj in of_kind(docs, kind):
            name = obj["metadata"]["name"]
            named[name] = next(p for p in pods if p.where == f"{kind} {name}")
    if overlay == "prod":
        named["serve-worker"] = find(pods, "RayService cryptopred-serve worker serve")
    return named, pods


# (target, port) -> who may connect, in prod. Dev adds the NodePort ports (below).
RAY_PODS = {"pipeline-head", "serve-head", "serve-worker"}
EXPECTED: dict[tuple[str, int], set[str]] = {
    ("mlflow", 5000): RAY_PODS,
    ("pipeline-head", 8265): SUBMITTERS | {"operator"},
    ("pipeline-head", 6379): set(),
    ("pipeline-head", 10001): set(),
    ("pipeline-head", 8080): {"prometheus"},
    ("serve-head", 8265): {"operator", "serve-worker"},
    ("serve-head", 8000): {"ingress", "serve-worker"},
    ("serve-head", 6379): {"serve-worker"},
    ("serve-head", 8080): {"prometheus", "serve-worker"},
    ("serve-worker", 8000): {"ingress", "serve-head"},
    ("serve-worker", 8080): {"prometheus", "serve-head"},
    ("grafana", 3000): {"ingress"},
    ("kafka-ui", 8080): set(),
}
# Kind maps these to host ports through NodePort Services (overlays/dev/nodeports.yaml);
# NodePort traffic arrives from the node, not from a pod, so dev opens these ports.
DEV_NODE_PORTS = {
    ("pipeline-head", 8265),
    ("serve-head", 8000),
    ("grafana", 3000),
    ("mlflow", 5000),
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_components_that_need_them_reach_the_services(overlay: str) -> None:
    named, _ = _sources(overlay)
    policies = policies_of(render(overlay))
    wrong = []
    for (target, port), allowed in EXPECTED.items():
        if target not in named:
            continue  # the Serve worker exists in prod only
        if overlay == "dev" and (target, port) in DEV_NODE_PORTS:
            allowed = set(named)
        allowed = allowed & set(named)
        reached = {
            name
            for name, source in named.items()
            if name != target and ingress_allowed(policies, source, named[target], port)
        }
        if reached != allowed - {target}:
            extra, missing = sorted(reached - allowed), sorted(allowed - reached)
            wrong.append(f"{target}:{port} also from {extra}, not from {missing}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_that_listens_is_isolated(overlay: str) -> None:
    _, pods = _sources(overlay)
    policies = policies_of(render(overlay))
    listening = [p for p in pods if p.named_ports]
    assert len(listening) >= 8
    open_pods = [p.where for p in listening if not selecting_policies(policies, p)]
    assert not open_pods, f"no NetworkPolicy isolates {open_pods}"


def _policy(ingress: Obj, selector: dict[str, str]) -> Obj:
    return {
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "cryptopred"},
        "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"], **ingress},
    }


def test_the_evaluator_follows_kubernetes_semantics() -> None:
    target = Pod("mlflow", {"app": "mlflow"}, named_ports={"http": 5000})
    friend = Pod("ray", {"app": "ray"})
    other_ns = Pod("ray elsewhere", {"app": "ray"}, "other", {"team": "a"})
    # not selected: everything reaches it
    assert ingress_allowed([_policy({}, {"app": "grafana"})], friend, target, 5000)
    # selected with no rules: nothing does
    deny = _policy({}, {"app": "mlflow"})
    assert not ingress_allowed([deny], friend, target, 5000)
    rule = {"from": [{"podSelector": {"matchLabels": {"app": "ray"}}}], "ports": [{"port": "http"}]}
    allow = _policy({"ingress": [rule]}, {"app": "mlflow"})
    assert ingress_allowed([deny, allow], friend, target, 5000)  # policies add up
    assert not ingress_allowed([allow], friend, target, 5001)
    assert not ingress_allowed([allow], other_ns, target, 5000)  # podSelector: same namespace
    both = {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {}}
    across = _policy({"ingress": [{"from": [both]}]}, {"app": "mlflow"})
    assert ingress_allowed([across], other_ns, target, 5000)
    assert not ingress_allowed([across], friend, target, 5000)
    ranged = {"ports": [{"port": 5000, "endPort": 5010}]}
    assert ingress_allowed(
        [_policy({"ingress": [ranged]}, {"app": "mlflow"})], other_ns, target, 5003
    )
