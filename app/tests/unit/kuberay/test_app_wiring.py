"""The app in the cluster: the Serve config, the RisingWave tables, Kafka topics, settings, jobs."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from cryptopred_core import topics
from cryptopred_core.db.schema import TABLES, app_written_tables
from cryptopred_core.settings import ENV_PREFIX
from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.stream.settings import StreamSettings
from cryptopred_testsupport.kuberay.checks import parse_tables
from cryptopred_testsupport.kuberay.render import (
    KUBERAY,
    OVERLAYS,
    ROOT,
    of_kind,
    one,
    pod_specs,
    render,
    risingwave_values,
)
from cryptopred_testsupport.scripts import load_script
from cryptopred_training.settings import TrainSettings


def _load_render_script() -> ModuleType:
    return load_script(KUBERAY / "render_serve_config.py")


def test_rayservice_import_path_resolves_to_the_serving_module() -> None:
    service = one(render("dev"), "RayService", "cryptopred-serve")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    paths = [app["import_path"] for app in config["applications"]]
    assert paths == ["cryptopred_serving.app:build_app"]
    module_name, attr = paths[0].split(":")
    try:
        spec = importlib.util.find_spec(module_name)
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        pytest.skip(f"serving app module not built yet: {module_name}")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attr, None)), f"{module_name} has no callable {attr}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rayservice_embeds_exactly_the_serve_yaml(overlay: str) -> None:
    script = _load_render_script()
    service = one(render(overlay), "RayService", "cryptopred-serve")
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    serve_yaml = yaml.safe_load((ROOT / "serving" / "serve_config.yaml").read_text())
    per_overlay = serve_yaml.get("overlay_deployments", {}).get(overlay, {})
    for app, yaml_app in zip(embedded["applications"], serve_yaml["applications"], strict=True):
        # the serve YAML's application, plus the overlay's deployment options, nothing else
        assert {k: v for k, v in app.items() if k != "deployments"} == yaml_app
        assert app.get("deployments", []) == per_overlay.get(app["name"], [])
    assert embedded["http_options"] == {"host": "0.0.0.0", "port": 8000}
    assert service["spec"]["serveConfigV2"] == script.serve_config_v2(
        overlay=overlay if per_overlay else None
    )
    assert script.main(["--check"]) == 0, "run `make serve-config`"
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    ports = {p["containerPort"] for c in head["containers"] for p in c.get("ports", [])}
    assert 8000 in ports


def test_prod_runs_an_api_replica_per_serve_worker() -> None:
    service = one(render("prod"), "RayService", "cryptopred-serve")
    (app,) = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    replicas = {d["name"]: d.get("num_replicas", 1) for d in app.get("deployments", [])}
    (group,) = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert group["minReplicas"] == group["replicas"] == 2
    # one API replica per worker (Serve spreads them): one node lost, the other answers
    assert replicas["PredictionAPI"] == group["replicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_serve_node_has_the_ingress_and_event_loop_settings(overlay: str) -> None:
    # Replicas and proxies run on any node of the Serve cluster (in prod, on the worker group),
    # so the head and every worker group carry the embedded stack's Serve settings.
    service = one(render(overlay), "RayService", "cryptopred-serve")
    nodes = list(pod_specs(service))
    groups = service["spec"]["rayClusterConfig"].get("workerGroupSpecs") or []
    assert len(nodes) == 1 + len(groups)
    for where, pod, _ in nodes:
        for container in pod["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1", (where, container["name"])
            assert env.get("RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD") == "0", where


def test_render_script_rejects_a_serve_yaml_without_applications(tmp_path: Path) -> None:
    script = _load_render_script()
    bad = tmp_path / "serve.yaml"
    bad.write_text("applications: []\n")
    with pytest.raises(ValueError, match="applications"):
        script.serve_config_v2(bad)


def test_risingwave_tables_match_the_table_contract() -> None:
    sql_text = (KUBERAY / "base" / "risingwave" / "init.sql").read_text()
    tables = parse_tables(sql_text)
    # The Job creates every table the app writes, as plain tables: no Kafka connector, so the
    # app is each table's one writer (and the stream job creating them first changes nothing).
    assert list(tables) == [t.name for t in app_written_tables("risingwave")]
    for name, parsed in tables.items():
        table = TABLES[name]
        expected = [(c.name, c.sql_type("risingwave"), c.nullable) for c in table.columns]
        assert parsed["columns"] == expected, name
        assert parsed["primary_key"] == table.primary_key, name
        assert parsed["options"] == {} and parsed["format"] is None, name
    env = one(render("dev"), "ConfigMap", "cryptopred-env")["data"]
    assert env["CRYPTOPRED_DB_DIALECT"] == "risingwave"


def test_sql_parser_sees_a_wrong_type() -> None:
    sql_text = (KUBERAY / "base" / "risingwave" / "init.sql").read_text()
    broken = sql_text.replace('"volume" DOUBLE PRECISION', '"volume" REAL', 1)
    column = dict((n, t) for n, t, _ in parse_tables(broken)["candles"]["columns"])
    assert column["volume"] == "REAL"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_init_job_runs_the_committed_sql(overlay: str) -> None:
    docs = render(overlay)
    sql_map = one(docs, "ConfigMap", "risingwave-init-sql")
    assert sql_map["data"]["init.sql"] == (KUBERAY / "base/risingwave/init.sql").read_text()
    job = one(docs, "Job", "risingwave-init")
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"][0]["configMap"]["name"] == "risingwave-init-sql"
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert (env["PGHOST"], env["PGPORT"], env["PGDATABASE"]) == ("risingwave", "4566", "dev")
    values = risingwave_values(overlay)
    assert (values["fullnameOverride"], values["service"]["port"]) == ("risingwave", 4566)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_is_kraft_with_the_architecture_topics(overlay: str) -> None:
    docs = render(overlay)
    (kafka,) = of_kind(docs, "Kafka")
    name = kafka["metadata"]["name"]
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    (pool,) = of_kind(docs, "KafkaNodePool")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == name
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    kafka_topics = of_kind(docs, "KafkaTopic")
    assert sorted(t["spec"]["topicName"] for t in kafka_topics) == sorted(topics.ALL_TOPICS)
    for topic in kafka_topics:
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == name
        assert topic["spec"]["partitions"] >= 1
    plain = next(x for x in kafka["spec"]["kafka"]["listeners"] if x["name"] == "plain")
    env = one(docs, "ConfigMap", "cryptopred-env")["data"]
    assert env["CRYPTOPRED_KAFKA_BOOTSTRAP"] == f"{name}-kafka-bootstrap:{plain['port']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_app_settings_in_the_cluster_are_valid(overlay: str) -> None:
    env = one(render(overlay), "ConfigMap", "cryptopred-env")["data"]
    fields = {key.removeprefix(ENV_PREFIX).lower(): value for key, value in env.items()}
    assert all(key.startswith(ENV_PREFIX) for key in env)
    # The trainer's settings extend the app's (CRYPTOPRED_RETRAIN_* drive the RayCronJob's runs);
    # the live source reads the ingest settings (CRYPTOPRED_KRAKEN_*), the stream job the
    # stream settings (where its stage actors run).
    known = (
        set(TrainSettings.model_fields)
        | set(IngestSettings.model_fields)
        | set(StreamSettings.model_fields)
    )
    assert set(fields) <= known, set(fields) - known
    settings = TrainSettings(**fields)
    assert settings.retrain_every_s is not None
    assert settings.db_dialect == "risingwave"
    assert settings.db_url == "postgresql://root@risingwave:4566/dev"
    assert settings.mlflow_uri == "http://mlflow:5000"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ray_jobs_run_the_app_entry_points_on_the_raycluster(overlay: str) -> None:
    docs = render(overlay)
    clusters = {c["metadata"]["name"] for c in of_kind(docs, "RayCluster")}
    stream, backfill = one(docs, "RayJob", "stream"), one(docs, "RayJob", "backfill")
    assert stream["spec"]["entrypoint"] == "python -m cryptopred_ingest.stream.job --live-source"
    assert backfill["spec"]["entrypoint"] == (
        "cryptopred ingest backfill --pairs BTC/USD,ETH/USD --since 24h"
    )
    cron = one(docs, "RayCronJob", "retrain")
    assert cron["spec"]["schedule"] == "0 */6 * * *"
    for spec in (stream["spec"], backfill["spec"]):
        assert spec["clusterSelector"]["ray.io/cluster"] in clusters
    # The cron entrypoint runs the mounted script, which retrains every served model, on the
    # run's own cluster (test_training_isolation.py).
    script_path = cron["spec"]["jobTemplate"]["entrypoint"].split()[-1]
    head = cron["spec"]["jobTemplate"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
    volume = next(v for v in head["volumes"] if v.get("configMap"))
    script_dir, script_name = script_path.rsplit("/", 1)
    assert mounts[volume["name"]] == script_dir
    script = one(docs, "ConfigMap", volume["configMap"]["name"])["data"][script_name]
    assert re.search(r"^cryptopred retrain once( 9>&-)?$", script, re.MULTILINE)
