"""The committed dashboards: generated from their definitions, wired to the provisioned
datasources, SQL within what PostgreSQL and RisingWave both run, and every PromQL target naming
a series that is exported (the project's named by Ray's own exporter, Ray's read from Ray's
own dashboards). Nothing here starts Ray or a database."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cryptopred.dashboards import __main__ as build_cli
from cryptopred.dashboards import build_all
from cryptopred.dashboards import targets as tg
from cryptopred.dashboards.grafana import GRID_WIDTH, Json
from cryptopred_core import metric_names as mn

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = ROOT / "dashboards"
CLUSTER_DATASOURCES = ROOT / "kuberay" / "base" / "grafana" / "datasources.yaml"
LOCAL_PROVISIONING = DASHBOARDS / "provisioning"

# Functions both PostgreSQL and RisingWave provide (RisingWave's SQL reference).
PORTABLE_FUNCTIONS = {"count", "avg", "sum", "min", "max", "nullif", "coalesce", "concat", "cast"}
SQL_KEYWORDS = {"in", "from", "as", "and", "or", "not", "select", "where", "join", "on", "all"}
ALLOWED_MACROS = set(tg.GLOBAL_NUMBERS)
SAMPLE_VALUES: dict[str, tg.VariableValue] = {
    "__from": 1_767_225_600_000,
    "__to": 1_767_229_200_000,
    "__interval_ms": 60_000,
    "pair": "BTC/USD",
    "candle_seconds": "60",
    "horizon": ["60", "300"],
    "model_version": "3",
}


@pytest.fixture(scope="module")
def boards() -> dict[str, Json]:
    return tg.load_dashboards(DASHBOARDS)


@pytest.fixture(scope="module")
def exported() -> Json:
    done = subprocess.run(
        [sys.executable, "-m", "cryptopred.dashboards.metrics"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report: Json = json.loads(done.stdout)
    return report


def test_the_committed_json_is_what_the_definitions_build() -> None:
    assert build_cli.main(["--check", "--out", str(DASHBOARDS)]) == 0, "run `make dashboards`"


def test_the_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    assert build_cli.main(["--out", str(tmp_path)]) == 0
    (tmp_path / "market.json").write_text("{}")
    assert build_cli.main(["--check", "--out", str(tmp_path)]) == 1


def test_three_dashboards_with_unique_uids_ids_and_sane_layout(boards: dict[str, Json]) -> None:
    assert set(boards) == {"cryptopred-market", "cryptopred-predictions", "cryptopred-health"}
    assert len(build_all()) == len(boards)
    for uid, board in boards.items():
        items = list(tg.panels(board))
        assert len({p["id"] for p in items}) == len(items), uid
        cells: set[tuple[int, int]] = set()
        for p in items:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= GRID_WIDTH, (uid, p["title"])
            mine = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & mine, f"{uid}: {p['title']} overlaps another panel"
            cells |= mine
            if p["type"] != "row":
                assert p["targets"], (uid, p["title"])


def _datasources(path: Path) -> dict[str, str]:
    doc = yaml.safe_load(path.read_text())
    return {d["uid"]: d["type"] for d in doc["datasources"]}


@pytest.mark.parametrize(
    "provisioning",
    [CLUSTER_DATASOURCES, LOCAL_PROVISIONING / "datasources" / "cryptopred.yaml"],
    ids=["cluster", "local"],
)
def test_every_datasource_a_dashboard_uses_is_provisioned(
    boards: dict[str, Json], provisioning: Path
) -> None:
    provided = _datasources(provisioning)
    used = set()
    for board in boards.values():
        for p in tg.panels(board):
            refs = [p.get("datasource"), *(t.get("datasource") for t in p.get("targets", []))]
            used |= {(r["uid"], r["type"]) for r in refs if r}
        for v in board["templating"]["list"]:
            used.add((v["datasource"]["uid"], v["datasource"]["type"]))
    assert used == {("risingwave", "grafana-postgresql-datasource"), ("prometheus", "prometheus")}
    for uid, kind in used:
        assert provided.get(uid) == kind, f"{provisioning}: no {kind} datasource with uid {uid}"


def test_the_local_dashboard_provider_reads_the_cluster_path() -> None:
    local = yaml.safe_load((LOCAL_PROVISIONING / "dashboards" / "cryptopred.yaml").read_text())
    cluster = yaml.safe_load((CLUSTER_DATASOURCES.parent / "dashboards-provider.yaml").read_text())
    assert local["providers"][0]["options"] == cluster["providers"][0]["options"]


# --- SQL ------------------------------------------------------------------------------------


def sql_problems(text: str) -> list[str]:
    """Why a panel's SQL may not run on both PostgreSQL and RisingWave (empty when fine)."""
    problems = []
    if "::" in text:
        problems.append("`::` casts: use CAST(x AS type)")
    for macro in re.findall(r"\$\{?(__\w+)", text):
        if macro not in ALLOWED_MACROS:
            problems.append(f"macro ${macro}: its expansion is PostgreSQL-specific or unbound")
    bare = re.sub(r"'[^']*'|\"[^\"]*\"", "''", text)
    for name in re.findall(r"\b([a-zA-Z_]\w*)\s*\(", bare):
        if name.lower() not in PORTABLE_FUNCTIONS | SQL_KEYWORDS:
            problems.append(f"function {name}() is not in the portable set")
    return problems


def all_sql(boards: dict[str, Json]) -> list[tg.Target]:
    return [t for b in boards.values() for t in [*tg.variable_queries(b), *tg.sql_targets(b)]]


def test_sql_sticks_to_what_both_dialects_run(boards: dict[str, Json]) -> None:
    targets = all_sql(boards)
    assert len(targets) >= 20
    problems = {f"{t.dashboard}/{t.panel}": sql_problems(t.text) for t in targets}
    assert not {k: v for k, v in problems.items() if v}


def test_the_sql_check_catches_postgres_only_sql() -> None:
    assert sql_problems("SELECT x::text FROM candles")
    assert sql_problems("SELECT date_trunc('minute', ts) FROM candles")
    assert sql_problems("SELECT 1 FROM candles WHERE $__timeFilter(ts)")
    assert not sql_problems(
        "SELECT CAST(x AS VARCHAR), count(*) FROM t WHERE a IN ($h) AND b < $__to"
    )


def test_every_sql_target_binds_every_variable_as_a_parameter(boards: dict[str, Json]) -> None:
    for board in boards.values():
        multi = tg.multi_variables(board)
        for target in [*tg.variable_queries(board), *tg.sql_targets(board)]:
            query, params = tg.bind(target.text, SAMPLE_VALUES, multi)
            assert "$" not in query, target
            if "'$pair'" in target.text:
                assert "BTC/USD" in params and "BTC/USD" not in query


def test_binding_refuses_misused_variables() -> None:
    with pytest.raises(tg.UnboundVariableError):
        tg.bind("SELECT 1 WHERE pair = $pair", {"pair": "BTC/USD"}, set())  # unquoted text
    with pytest.raises(tg.UnboundVariableError):
        tg.bind("SELECT 1 WHERE h = '$horizon'", {"horizon": ["60"]}, {"horizon"})
    with pytest.raises(tg.UnboundVariableError):
        tg.bind("SELECT 1 WHERE a = $missing", {}, set())
    query, params = tg.bind(
        "SELECT a % 2 FROM t WHERE p = '$pair' AND h IN ($h)",
        {"pair": "X'Y", "h": ["1", "2"]},
        {"h"},
    )
    assert query == "SELECT a %% 2 FROM t WHERE p = %s AND h IN (%s, %s)"
    assert params == ["X'Y", "1", "2"]


# --- PromQL ---------------------------------------------------------------------------------


def test_promql_names_are_read_from_expressions() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(ray_a_bucket{route!~"/-/.*"}'
        "[$__rate_interval]))) / on (x) ray_b or vector(0) + time() * 1000 - max by (s) (ray_c)"
    )
    assert tg.promql_metric_names(expr) == {"ray_a_bucket", "ray_b", "ray_c"}


def test_the_exported_series_are_named_as_rays_exporter_names_them(exported: Json) -> None:
    project = {m["name"] for m in exported["project"]}
    assert {"cryptopred_stream_consumed_total", "cryptopred_stream_lag"} <= project
    assert {"cryptopred_ingest_reconnects_total", "cryptopred_ingest_trades_per_s"} <= project
    series = exported["series"]
    assert series["ray_cryptopred_stream_dead_total"] == "cryptopred_stream_dead_total"
    assert series["ray_cryptopred_stream_lag"] == "cryptopred_stream_lag"
    assert "ray_serve_http_request_latency_ms_bucket" in series  # from Ray's Serve dashboard
    assert "ray_node_cpu_utilization" in series
    assert "cryptopred_stream_lag" not in series  # Ray's exporter adds the prefix
    assert "ray_cryptopred_stream_dead_total_total" not in series
    assert "ray_cryptopred_stream_nonexistent_total" not in series


@pytest.mark.parametrize("metric", [*mn.PROJECT_METRICS, *mn.RAY_METRICS], ids=lambda m: m.name)
def test_each_named_series_is_one_ray_exports(exported: Json, metric: mn.Metric) -> None:
    name = metric.bucket_series if metric.kind == "histogram" else metric.series
    assert name in exported["series"]


def test_every_promql_target_names_an_exported_series(
    boards: dict[str, Json], exported: Json
) -> None:
    targets = [t for b in boards.values() for t in tg.promql_targets(b)]
    assert len(targets) >= 10
    unknown = {}
    for target in targets:
        names = tg.promql_metric_names(target.text)
        assert names, f"{target.panel} [{target.ref}] selects no metric"
        missing = sorted(n for n in names if n not in exported["series"])
        if missing:
            unknown[f"{target.panel} [{target.ref}]"] = missing
    assert not unknown, f"PromQL names no exported series: {unknown}"
