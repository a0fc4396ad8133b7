"""Resource budgets, fault tolerance, non-root pods, network policies and Kind's ports."""

from __future__ import annotations

import pytest
import yaml

from cryptopred_testsupport.kuberay.render import (
    DEV_BUDGET,
    DEV_REQUEST_MEM,
    KUBERAY,
    OVERLAYS,
    PROD_NODE_ALLOCATABLE,
    PROD_POD_MAX,
    PROD_REQUEST_BUDGET,
    Obj,
    containers,
    job_cluster_pod,
    memory,
    of_kind,
    one,
    pod_specs,
    render,
    resource_usage,
    risingwave_values,
    running_pods,
    totals,
)


def test_dev_fits_four_vcpu_and_twelve_gib() -> None:
    docs = render("dev")
    steady = totals(docs, "dev", job_clusters=False)
    cpu_budget, mem_budget = DEV_BUDGET
    assert steady["req_cpu"] <= steady["lim_cpu"] <= cpu_budget, steady
    assert steady["req_mem"] <= steady["lim_mem"] <= mem_budget, steady
    with_training = totals(docs, "dev")
    assert with_training["req_mem"] > steady["req_mem"]  # the retraining run is counted
    assert with_training["req_cpu"] <= cpu_budget, with_training
    assert with_training["req_mem"] <= DEV_REQUEST_MEM, with_training


def test_prod_fits_one_xlarge_civo_node_with_a_retraining_run() -> None:
    docs = render("prod")
    total = totals(docs, "prod")
    assert total["req_mem"] > totals(docs, "prod", job_clusters=False)["req_mem"]
    assert total["req_cpu"] <= PROD_REQUEST_BUDGET[0], total
    assert total["req_mem"] <= PROD_REQUEST_BUDGET[1], total
    for where, usage, _ in running_pods(docs, "prod"):
        if job_cluster_pod(where):  # the retraining run's head: on the xlarge node
            assert usage["req_cpu"] <= PROD_NODE_ALLOCATABLE[0], where
            assert usage["lim_mem"] <= PROD_NODE_ALLOCATABLE[1], where
            continue
        assert usage["req_cpu"] <= PROD_POD_MAX[0] and usage["req_mem"] <= PROD_POD_MAX[1], where
        assert usage["lim_mem"] <= PROD_POD_MAX[1], f"{where}: limit larger than a medium node"
    dev = totals(render("dev"), "dev", job_clusters=False)
    steady = totals(docs, "prod", job_clusters=False)
    assert steady["lim_cpu"] > dev["lim_cpu"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    for obj in render(overlay):
        for where, pod, _ in pod_specs(obj):
            for container in containers(pod):
                resource_usage(container.get("resources", {}), f"{where} {container['name']}")


def test_prod_has_gcs_fault_tolerance_on_redis_and_dev_does_not() -> None:
    prod = render("prod")
    services = {s["metadata"]["name"]: s for s in of_kind(prod, "Service")}
    clusters = [
        one(prod, "RayCluster", "cryptopred")["spec"],
        one(prod, "RayService", "cryptopred-serve")["spec"]["rayClusterConfig"],
    ]
    for cluster in clusters:
        options = cluster["gcsFaultToleranceOptions"]
        host, port = options["redisAddress"].split(":")
        assert host in services and int(port) in {
            p["port"] for p in services[host]["spec"]["ports"]
        }
        assert options["redisPassword"]["valueFrom"]["secretKeyRef"]["name"] == "redis"
        annotations = cluster.get("metadata", {}).get("annotations", {})
        assert "ray.io/ft-enabled" not in annotations
    serve = clusters[1]
    assert serve["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert [g["groupName"] for g in serve["workerGroupSpecs"]] == ["serve"]
    dev = render("dev")
    assert "gcsFaultToleranceOptions" not in one(dev, "RayCluster", "cryptopred")["spec"]
    assert not of_kind([d for d in dev if d["metadata"]["name"] == "redis"], "Deployment")


def _run_as_non_root(pod: Obj) -> bool:
    if (pod.get("securityContext") or {}).get("runAsNonRoot") is True:
        return True
    return all((c.get("securityContext") or {}).get("runAsNonRoot") for c in containers(pod))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root(overlay: str) -> None:
    docs = render(overlay)
    checked = 0
    for obj in docs:
        for where, pod, _ in pod_specs(obj):
            assert _run_as_non_root(pod), f"{where}: runAsNonRoot is not set"
            checked += 1
    for kafka in of_kind(docs, "Kafka"):
        assert kafka["spec"]["kafka"]["template"]["pod"]["securityContext"]["runAsNonRoot"]
        assert kafka["spec"]["entityOperator"]["template"]["pod"]["securityContext"]["runAsNonRoot"]
    assert risingwave_values(overlay)["standalone"]["podSecurityContext"]["runAsNonRoot"]
    assert checked >= 10


def _selects(policy: Obj, labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return bool(wanted) and wanted.items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_keep_databases_and_kafka_in_the_namespace(overlay: str) -> None:
    docs = render(overlay)
    policies = of_kind(docs, "NetworkPolicy")
    (kafka,) = of_kind(docs, "Kafka")
    external_ports = {
        x["port"] for x in kafka["spec"]["kafka"]["listeners"] if x["type"] != "internal"
    }
    targets = {
        "risingwave": risingwave_values(overlay)["standalone"]["podLabels"],
        "mlflow-postgres": one(docs, "StatefulSet", "mlflow-postgres")["spec"]["template"][
            "metadata"
        ]["labels"],
        "minio": one(docs, "Deployment", "minio")["spec"]["template"]["metadata"]["labels"],
        "kafka": {"strimzi.io/cluster": kafka["metadata"]["name"], "strimzi.io/kind": "Kafka"},
    }
    if overlay == "prod":
        targets["redis"] = one(docs, "Deployment", "redis")["spec"]["template"]["metadata"][
            "labels"
        ]
    for target, labels in targets.items():
        matching = [p for p in policies if _selects(p, labels)]
        assert matching, f"no NetworkPolicy selects {target}"
        for policy in matching:
            assert policy["spec"]["policyTypes"] == ["Ingress"]
            for rule in policy["spec"]["ingress"]:
                if "from" not in rule:  # only the external Kafka listener of the dev overlay
                    assert target == "kafka" and overlay == "dev", policy["metadata"]["name"]
                    assert {p["port"] for p in rule["ports"]} <= external_ports
                    continue
                for peer in rule["from"]:
                    if "namespaceSelector" in peer:
                        assert target == "kafka"
                        assert peer["namespaceSelector"]["matchLabels"] == {
                            "kubernetes.io/metadata.name": "strimzi"
                        }
                    else:
                        assert peer == {"podSelector": {}}, peer


def test_kind_maps_the_dev_node_ports() -> None:
    docs = render("dev")
    kind_config = yaml.safe_load((KUBERAY / "kind-config.yaml").read_text())
    host_port = {
        m["containerPort"]: m["hostPort"] for m in kind_config["nodes"][0]["extraPortMappings"]
    }
    by_target = {}
    for service in of_kind(docs, "Service"):
        if service["spec"].get("type") == "NodePort":
            for port in service["spec"]["ports"]:
                assert port["nodePort"] in host_port, service["metadata"]["name"]
                by_target[port["targetPort"]] = port["nodePort"]
    assert {8265, 8000, 3000, 5000} <= set(by_target), "Ray dashboard, Serve, Grafana, MLflow"
    (kafka,) = of_kind(docs, "Kafka")
    external = next(x for x in kafka["spec"]["kafka"]["listeners"] if x["type"] == "nodeport")
    assert external["configuration"]["bootstrap"]["nodePort"] in host_port
    for broker in external["configuration"]["brokers"]:
        assert host_port[broker["nodePort"]] == broker["advertisedPort"]


#: peak resident memory of `ray job submit` as it starts, measured with `/usr/bin/time -v`
SUBMIT_CLI_PEAK_MIB = 214


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_submitters_have_room_for_the_ray_job_cli(overlay: str) -> None:
    submitters = [
        (where, pod)
        for obj in render(overlay)
        if obj["kind"] in ("RayJob", "RayCronJob")
        for where, pod, _ in pod_specs(obj)
        if where.endswith("submitter")
    ]
    assert len(submitters) == 3, [where for where, _ in submitters]
    for where, pod in submitters:
        for container in containers(pod):
            limit_mib = memory(container["resources"]["limits"]["memory"]) / 2**20
            assert limit_mib >= 1.5 * SUBMIT_CLI_PEAK_MIB, f"{where}: {limit_mib:.0f} MiB"
