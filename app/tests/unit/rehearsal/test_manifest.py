"""The rehearsal's reading of the manifests: pods, env, limits, jobs, `ray start` flags."""

from __future__ import annotations

import pytest

from cryptopred.rehearsal.manifest import (
    ManifestError,
    ServiceMap,
    container_env,
    cpu_cores,
    memory_bytes,
    ray_start_argv,
    read_plan,
    rewrite_mounts,
    secret_names,
    shell_word,
)
from cryptopred_testsupport.kuberay.render import render

SECRETS = {
    "mlflow-auth": {"username": "admin", "password": "pw"},
    "redis": {"password": "r"},
}


def test_quantities() -> None:
    assert cpu_cores("500m") == 0.5
    assert cpu_cores("2") == 2.0
    assert memory_bytes("1664Mi") == 1664 * 1024**2
    assert memory_bytes("1.5Gi") == int(1.5 * 1024**3)
    assert memory_bytes("512M") == 512_000_000
    assert memory_bytes(4096) == 4096


def test_env_order_and_refs() -> None:
    config_maps = {"env": {"data": {"A": "1", "B": "2"}}}
    container = {
        "envFrom": [
            {"configMapRef": {"name": "env"}},
            {"secretRef": {"name": "s"}, "prefix": "S_"},
        ],
        "env": [
            {"name": "B", "value": "override"},
            {"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "env", "key": "A"}}},
        ],
    }
    env = container_env(container, config_maps, {"s": {"pw": "x"}})
    assert env == {"A": "1", "B": "override", "S_pw": "x", "P": "x", "C": "1"}


def test_missing_secret_is_named() -> None:
    container = {"env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    with pytest.raises(ManifestError, match="Secret s"):
        container_env(container, {}, {})


def test_service_map_replaces_whole_host_ports_only() -> None:
    services = ServiceMap(
        hosts={"mlflow:5000": "127.0.0.1:15000", "cryptopred-head-svc:8265": "127.0.0.1:18265"},
        values={"DB": "postgresql://local/db"},
    )
    env = {
        "URI": "http://mlflow:5000",
        "OTHER": "http://not-mlflow:5000",
        "DASH": "http://cryptopred-head-svc:8265",
        "DB": "postgresql://root@risingwave:4566/dev",
    }
    assert services.apply(env) == {
        "URI": "http://127.0.0.1:15000",
        "OTHER": "http://not-mlflow:5000",
        "DASH": "http://127.0.0.1:18265",
        "DB": "postgresql://local/db",
    }


def test_rewrite_mounts() -> None:
    mounts = {"/opt/cryptopred": "/tmp/x/opt"}
    assert rewrite_mounts("bash /opt/cryptopred/retrain.sh", mounts) == "bash /tmp/x/opt/retrain.sh"
    assert rewrite_mounts("bash /opt/cryptopredX/a.sh", mounts) == "bash /opt/cryptopredX/a.sh"


def test_dev_plan() -> None:
    plan = read_plan(render("dev"), SECRETS)
    assert [c.name for c in plan.clusters] == ["cryptopred", "cryptopred-serve", "retrain"]
    assert [c.owner_job for c in plan.clusters] == [None, None, "retrain"]
    pipeline = plan.cluster("cryptopred")
    assert [p.name for p in pipeline.pods] == [
        "cryptopred-head",
        "cryptopred-worker-stages-0",
        "cryptopred-worker-stages-1",
    ]
    head = pipeline.head
    assert head.cpu_limit == 0.75
    assert head.num_cpus == "0"  # rayStartParams win over the CPU limit
    # the custom resources, unquoted as the pod's shell passes them to `ray start`
    assert '--resources={"source": 4}' in ray_start_argv(head, {}, None)
    stage = pipeline.pods[1]
    assert '--resources={"stage": 3}' in ray_start_argv(stage, {}, "127.0.0.1:1")
    assert head.env["CRYPTOPRED_DATABASE_URL"] == "postgresql://root@risingwave:4566/dev"
    assert head.env["MLFLOW_TRACKING_PASSWORD"] == "pw"
    assert "retrain.sh" in head.config_files["/opt/cryptopred"]
    serve = plan.cluster("cryptopred-serve")
    assert serve.serve_config is not None
    assert (
        serve.serve_config["applications"][0]["import_path"] == "cryptopred_serving.app:build_app"
    )
    assert serve.head.env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    jobs = [(j.name, j.kind, j.wait) for j in plan.jobs]
    assert jobs == [
        ("stream", "RayJob", False),
        ("backfill", "RayJob", True),
        ("retrain", "RayCronJob", True),
    ]
    assert plan.jobs[0].entrypoint == "python -m cryptopred_ingest.stream.job --live-source"
    assert [j.cluster for j in plan.jobs] == ["cryptopred", "cryptopred", "retrain"]
    # the retraining run's own cluster: one head, its limit and the scripts it runs
    retrain = plan.cluster("retrain")
    assert retrain.kind == "RayCronJob" and [p.name for p in retrain.pods] == ["retrain-head"]
    assert retrain.head.memory_limit_bytes == 5 * 1024**3
    assert "retrain.sh" in retrain.head.config_files["/opt/cryptopred"]


def test_a_job_without_a_cluster_is_named() -> None:
    docs = [
        {"kind": "RayJob", "metadata": {"name": "lost"}, "spec": {"entrypoint": "true"}},
    ]
    with pytest.raises(ManifestError, match="RayJob lost: neither a clusterSelector nor"):
        read_plan(docs, SECRETS)


def test_prod_plan_has_one_pod_per_worker_replica() -> None:
    plan = read_plan(render("prod"), SECRETS)
    serve = plan.cluster("cryptopred-serve")
    assert [p.name for p in serve.pods] == [
        "cryptopred-serve-head",
        "cryptopred-serve-worker-serve-0",
        "cryptopred-serve-worker-serve-1",
    ]
    worker = serve.pods[1]
    assert not worker.head and worker.num_cpus == "2"
    assert worker.memory_limit_bytes == 2560 * 1024**2
    assert serve.head.num_cpus == "0"
    assert plan.cluster("cryptopred").head.memory_limit_bytes == 1536 * 1024**2


def test_secret_names_of_ray_pods() -> None:
    assert secret_names(render("prod")) == {"mlflow-auth", "redis"}


def test_shell_word_unquotes_like_the_pod_shell() -> None:
    assert shell_word('"{\\"stage\\": 3}"') == '{"stage": 3}'
    assert shell_word("'a b'") == "a b"
    assert shell_word("0.0.0.0") == "0.0.0.0"
    assert shell_word('"a" "b"') == '"a" "b"'  # two words: left as written


def test_ray_start_argv() -> None:
    plan = read_plan(render("prod"), SECRETS)
    head, worker, _ = plan.cluster("cryptopred-serve").pods
    head_argv = ray_start_argv(head, {"port": 16379, "dashboard-port": 18265}, None)
    assert head_argv[:4] == ["start", "--block", "--disable-usage-stats", "--head"]
    assert "--num-cpus=0" in head_argv and "--dashboard-host=127.0.0.1" in head_argv
    assert f"--memory={1792 * 1024**2}" in head_argv and "--port=16379" in head_argv
    worker_argv = ray_start_argv(worker, {}, "127.0.0.1:16379")
    assert "--head" not in worker_argv and "--address=127.0.0.1:16379" in worker_argv
    assert "--num-cpus=2" in worker_argv and f"--memory={2560 * 1024**2}" in worker_argv
    with pytest.raises(ManifestError):
        ray_start_argv(worker, {}, None)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_serve_config_args_build_the_serve_settings(overlay: str) -> None:
    """`build_app` makes ServeSettings from each application's args; the rehearsal found
    `candle_seconds: 60` (not a list) failing there with DEPLOY_FAILED."""
    from cryptopred_serving.settings import ServeSettings

    config = read_plan(render(overlay), SECRETS).cluster("cryptopred-serve").serve_config
    assert config is not None
    for application in config["applications"]:
        settings = ServeSettings(**application.get("args", {}))
        assert settings.candle_seconds == [60]
