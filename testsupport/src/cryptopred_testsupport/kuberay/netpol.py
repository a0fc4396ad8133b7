"""Kubernetes NetworkPolicy ingress semantics, evaluated offline over rendered manifests.

`ingress_allowed` answers "may this pod open a TCP connection to that port of that pod?" the
way a policy-enforcing CNI does: a pod selected by no Ingress policy accepts everything; a
selected pod accepts a connection when one rule of one selecting policy matches both the peer
and the port. `pods_of` lists the pods the manifests make, with the labels they will carry.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptopred_testsupport.kuberay.render import NAMESPACE, Obj, containers, of_kind

Labels = dict[str, str]


@dataclass(frozen=True)
class Pod:
    """A pod as NetworkPolicies see it: namespace (and its labels), pod labels, named ports."""

    where: str
    labels: Labels
    namespace: str = NAMESPACE
    namespace_labels: Labels = field(default_factory=dict)
    named_ports: dict[str, int] = field(default_factory=dict)

    def ns_labels(self) -> Labels:
        return {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}


def selector_matches(selector: Obj | None, labels: Labels) -> bool:
    """A LabelSelector (matchLabels and matchExpressions); {} selects everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _peer_matches(peer: Obj, source: Pod, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        return False  # pod-to-pod traffic is judged by selectors here
    pods, namespaces = peer.get("podSelector"), peer.get("namespaceSelector")
    if namespaces is None:
        return source.namespace == policy_ns and selector_matches(pods, source.labels)
    if not selector_matches(namespaces, source.ns_labels()):
        return False
    return pods is None or selector_matches(pods, source.labels)


def _port_matches(ports: list[Obj] | None, port: int, target: Pod) -> bool:
    if not ports:
        return True
    for item in ports:
        if item.get("protocol", "TCP") != "TCP":
            continue
        wanted: int | str | None = item.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            if target.named_ports.get(wanted) == port:
                return True
            continue
        end_port: int = item.get("endPort", wanted)
        if wanted <= port <= end_port:
            return True
    return False


def selecting_policies(policies: list[Obj], target: Pod) -> list[Obj]:
    """The Ingress policies that isolate `target`."""
    return [
        p
        for p in policies
        if p["metadata"].get("namespace", NAMESPACE) == target.namespace
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and selector_matches(p["spec"]["podSelector"], target.labels)
    ]


def ingress_allowed(policies: list[Obj], source: Pod, target: Pod, port: int) -> bool:
    """Whether `source` may connect to `target` on TCP `port`."""
    selecting = selecting_policies(policies, target)
    if not selecting:
        return True
    for policy in selecting:
        policy_ns = policy["metadata"].get("namespace", NAMESPACE)
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from")
            peer_ok = not peers or any(_peer_matches(p, source, policy_ns) for p in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, target):
                return True
    return False


def _named_ports(pod: Obj) -> dict[str, int]:
    return {
        p["name"]: p["containerPort"]
        for c in containers(pod)
        for p in c.get("ports") or []
        if p.get("name")
    }


def _ray_group_pods(cluster: Obj, where: str, name: str | None) -> Iterator[Pod]:
    groups = [("head", "headgroup", cluster["headGroupSpec"])]
    groups += [("worker", g["groupName"], g) for g in cluster.get("workerGroupSpecs") or []]
    for node_type, group, spec in groups:
        template = spec["template"]
        # Labels KubeRay adds to every Ray pod; a RayService's cluster name is generated.
        labels = {"ray.io/node-type": node_type, "ray.io/group": group, "ray.io/is-ray-node": "yes"}
        if name:
            labels["ray.io/cluster"] = name
        labels.update((template.get("metadata") or {}).get("labels") or {})
        yield Pod(
            f"{where} {node_type} {group}", labels, named_ports=_named_ports(template["spec"])
        )


def _submitter_pod(job: Obj, where: str) -> Iterator[Pod]:
    template = job.get("submitterPodTemplate")
    if template:
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        yield Pod(f"{where} submitter", labels, named_ports=_named_ports(template["spec"]))


def pods_of(docs: list[Obj], risingwave_labels: Labels) -> list[Pod]:
    """Every pod of the rendered manifests (and RisingWave's, from its helm values)."""
    pods: list[Pod] = []
    for obj in docs:
        kind, spec, name = obj["kind"], obj.get("spec", {}), obj["metadata"]["name"]
        where = f"{kind} {name}"
        if kind in ("Deployment", "StatefulSet", "Job"):
            template = spec["template"]
            labels = dict(template["metadata"].get("labels") or {})
            pods.append(Pod(where, labels, named_ports=_named_ports(template["spec"])))
        elif kind == "RayCluster":
            pods += _ray_group_pods(spec, where, name)
        elif kind == "RayService":
            pods += _ray_group_pods(spec["rayClusterConfig"], where, None)
        elif kind == "RayJob":
            pods += _submitter_pod(spec, where)
        elif kind == "RayCronJob":
            pods += _submitter_pod(spec["jobTemplate"], where)
    pods.append(Pod("RisingWave", dict(risingwave_labels), named_ports={"svc": 4566}))
    return pods


def find(pods: list[Pod], where: str) -> Pod:
    """The one pod whose description starts with `where`."""
    found = [p for p in pods if p.where.startswith(where)]
    assert len(found) == 1, f"{where}: {[p.where for p in found]}"
    return found[0]


def policies_of(docs: list[Obj]) -> list[Obj]:
    return of_kind(docs, "NetworkPolicy")
