"""Generated credentials in the cluster: MLflow's basic-auth login used by every Ray pod that
trains or serves, and Grafana reading RisingWave as a SELECT-only user."""

from __future__ import annotations

import re

import pytest
import yaml

from cryptopred.dashboards import targets as tg
from cryptopred_testsupport.kuberay.checks import parse_tables
from cryptopred_testsupport.kuberay.render import (
    KUBERAY,
    OVERLAYS,
    ROOT,
    Obj,
    containers,
    of_kind,
    one,
    pod_specs,
    render,
)

MLFLOW_SECRET = "mlflow-auth"
GRAFANA_ROLE = "cryptopred_grafana"
GRAFANA_DB_SECRET = "grafana-db"
ROLE_SQL = KUBERAY / "base" / "risingwave" / "grafana-role.sql"


def _env(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env") or []}


def _secret_ref(env: dict[str, Obj], name: str) -> tuple[str, str] | None:
    ref = (env.get(name, {}).get("valueFrom") or {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


def _mlflow(docs: list[Obj]) -> Obj:
    pod = one(docs, "Deployment", "mlflow")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    found: Obj = container
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mlflow_requires_a_login_with_a_generated_admin(overlay: str) -> None:
    container = _mlflow(render(overlay))
    script = container["command"][-1]
    assert re.search(r"exec mlflow server .*--app-name basic-auth", script.replace("\\\n", " "))
    env = _env(container)
    assert _secret_ref(env, "MLFLOW_AUTH_ADMIN_USERNAME") == (MLFLOW_SECRET, "username")
    assert _secret_ref(env, "MLFLOW_AUTH_ADMIN_PASSWORD") == (MLFLOW_SECRET, "password")
    # The auth config is written at start (it holds the user store's database URL) to a
    # writable volume, and gives users other than the admin nothing by default.
    config_path = env["MLFLOW_AUTH_CONFIG_PATH"]["value"]
    assert config_path.startswith("/tmp/") and f"> {config_path}" in script
    assert "default_permission = NO_PERMISSIONS" in script
    assert "database_uri = postgresql+psycopg://" in script
    # the auth app needs the `auth` extra (Flask-WTF) in the image
    dockerfile = (KUBERAY / "Dockerfile").read_text()
    assert '"mlflow[auth]==${MLFLOW_VERSION}"' in dockerfile


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_ray_pod_logs_in_to_mlflow(overlay: str) -> None:
    docs = render(overlay)
    server = _env(_mlflow(docs))
    login = (
        _secret_ref(server, "MLFLOW_AUTH_ADMIN_USERNAME"),
        _secret_ref(server, "MLFLOW_AUTH_ADMIN_PASSWORD"),
    )
    assert login == ((MLFLOW_SECRET, "username"), (MLFLOW_SECRET, "password"))
    checked = []
    for kind in ("RayCluster", "RayService"):
        for obj in of_kind(docs, kind):
            for where, pod, _ in pod_specs(obj):
                for container in containers(pod):
                    env = _env(container)
                    client = (
                        _secret_ref(env, "MLFLOW_TRACKING_USERNAME"),
                        _secret_ref(env, "MLFLOW_TRACKING_PASSWORD"),
                    )
                    assert client == login, f"{where} {container['name']}: no MLflow login"
                    checked.append(where)
    assert len(checked) == (3 if overlay == "dev" else 4)


def _granted() -> dict[str, set[str]]:
    """privilege -> tables, from the GRANT ... ON TABLE statements of the role SQL."""
    grants: dict[str, set[str]] = {}
    sql_text = ROLE_SQL.read_text()
    for privileges, tables, user in re.findall(
        r"GRANT\s+([^;]+?)\s+ON\s+TABLE\s+([^;]+?)\s+TO\s+(\w+)\s*;", sql_text, re.I | re.S
    ):
        assert user == GRAFANA_ROLE
        for privilege in privileges.split(","):
            grants.setdefault(privilege.strip().upper(), set()).update(
                t.strip() for t in tables.split(",")
            )
    return grants


def _charted_tables() -> set[str]:
    boards = tg.load_dashboards(ROOT / "dashboards")
    texts = [t.text for b in boards.values() for t in [*tg.variable_queries(b), *tg.sql_targets(b)]]
    return {n for text in texts for n in re.findall(r"\b(?:FROM|JOIN)\s+([a-z_]+)", text, re.I)}


def test_the_grafana_role_selects_exactly_the_charted_tables() -> None:
    grants = _granted()
    charted = _charted_tables()
    assert grants == {"SELECT": charted}, grants
    sql_text = ROLE_SQL.read_text()
    # no other privilege of any kind, a password from the init Job, no superuser powers
    assert not re.search(r"GRANT\s+(ALL|INSERT|UPDATE|DELETE|CREATE)", sql_text, re.I)
    assert re.search(rf"CREATE USER {GRAFANA_ROLE} WITH .*PASSWORD :'grafana_password'", sql_text)
    assert re.search(rf"ALTER USER {GRAFANA_ROLE} WITH .*PASSWORD :'grafana_password'", sql_text)
    for statement in re.findall(rf"(?:CREATE|ALTER) USER {GRAFANA_ROLE} WITH ([^;]+);", sql_text):
        assert {"NOSUPERUSER", "NOCREATEDB", "NOCREATEUSER"} <= set(statement.split())
    # every granted table exists when the grant runs (init.sql runs first)
    created = set(parse_tables((KUBERAY / "base" / "risingwave" / "init.sql").read_text()))
    assert charted <= created, charted - created


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_init_job_and_grafana_share_a_generated_password(overlay: str) -> None:
    docs = render(overlay)
    sql_map = one(docs, "ConfigMap", "risingwave-init-sql")
    assert sql_map["data"]["grafana-role.sql"] == ROLE_SQL.read_text()
    job = one(docs, "Job", "risingwave-init")["spec"]["template"]["spec"]
    (psql,) = job["containers"]
    assert _secret_ref(_env(psql), "GRAFANA_DB_PASSWORD") == (GRAFANA_DB_SECRET, "password")
    script = psql["command"][-1]
    assert script.index("-f /sql/init.sql") < script.index("-f /sql/grafana-role.sql")
    assert '-v grafana_password="$GRAFANA_DB_PASSWORD"' in script
    grafana = one(docs, "Deployment", "grafana")["spec"]["template"]["spec"]["containers"][0]
    assert _secret_ref(_env(grafana), "GRAFANA_DB_PASSWORD") == (GRAFANA_DB_SECRET, "password")
    datasources = yaml.safe_load(
        one(docs, "ConfigMap", "grafana-datasources")["data"]["datasources.yaml"]
    )
    (sql_source,) = [d for d in datasources["datasources"] if d["uid"] == "risingwave"]
    assert sql_source["user"] == GRAFANA_ROLE
    assert sql_source["secureJsonData"] == {"password": "$GRAFANA_DB_PASSWORD"}
