"""The cluster targets of kuberay/Makefile.mk."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from cryptopred_testsupport.kuberay.render import KUBERAY, ROOT, make_kuberay, one, render, tool

MAKE_TARGETS = (
    "cluster-up",
    "cluster-down",
    "undeploy",
    "deploy",
    "port-forward",
    "ray-dashboard",
    "submit-stream",
    "submit-train",
    "build-image",
    "kind-load",
    "secrets",
    "serve-config",
    "kuberay-init-sql",
    "pin-images",
)


def test_makefile_has_the_cluster_targets() -> None:
    makefile = (KUBERAY / "Makefile.mk").read_text()
    for target in MAKE_TARGETS:
        assert re.search(rf"^{target}:.*## ", makefile, re.M), f"no documented target {target}"
    assert "ray job submit" in makefile and "$(KIND) create cluster" in makefile


def test_make_deploy_refuses_an_unknown_env_and_picks_the_overlay() -> None:
    bad = make_kuberay("-n", "deploy", "ENV=staging")
    assert bad.returncode != 0 and "ENV must be dev or prod" in bad.stderr
    prod = make_kuberay("-n", "deploy", "ENV=prod")
    assert prod.returncode == 0, prod.stderr
    assert "kubectl kustomize kuberay/overlays/prod" in prod.stdout
    assert "-f kuberay/overlays/prod/risingwave-values.yaml" in prod.stdout
    dev = make_kuberay("-n", "deploy", "ENV=dev")
    assert dev.returncode == 0 and "risingwave-values.yaml" not in dev.stdout


def test_dashboards_configmap_holds_every_json_file(tmp_path: Path) -> None:
    (tmp_path / "market.json").write_text('{"title": "Market"}')
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "health.json").write_text('{"title": "Pipeline health"}')
    (tmp_path / "notes.md").write_text("not a dashboard")
    done = make_kuberay("-s", "kuberay-dashboards-yaml", f"DASHBOARDS_DIR={tmp_path}")
    assert done.returncode == 0, done.stderr
    configmap = yaml.safe_load(done.stdout)
    assert configmap["metadata"]["name"] == "grafana-dashboards"
    assert set(configmap["data"]) == {"market.json", "health.json"}
    grafana = one(render("dev"), "Deployment", "grafana")["spec"]["template"]["spec"]
    volume = next(v for v in grafana["volumes"] if v["name"] == "dashboards")
    assert volume["configMap"] == {"name": "grafana-dashboards", "optional": True}
    mounts = {m["name"]: m["mountPath"] for m in grafana["containers"][0]["volumeMounts"]}
    provider = yaml.safe_load((KUBERAY / "base/grafana/dashboards-provider.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["dashboards"]


def test_make_submit_train_passes_the_trials() -> None:
    default = make_kuberay("-n", "submit-train")
    assert default.returncode == 0, default.stderr
    assert "--trials 1" in default.stdout and "--workers" not in default.stdout
    searched = make_kuberay("-n", "submit-train", "TRAIN_TRIALS=6")
    assert searched.returncode == 0 and "--trials 6" in searched.stdout


def _dry_run(*args: str) -> list[str]:
    done = make_kuberay("-n", *args)
    assert done.returncode == 0, done.stderr
    # one line per command: backslash-continued lines joined
    return re.sub(r"\\\n\s*", "", done.stdout).splitlines()


def _helm_releases(*targets: str) -> list[tuple[str, str]]:
    """(release, namespace) of every `helm upgrade --install` the targets run."""
    found = [
        re.search(r"helm upgrade --install (\S+) .*--namespace (\S+)", line)
        for line in _dry_run(*targets)
    ]
    return [(m[1], m[2]) for m in found if m]


def test_cluster_down_on_prod_removes_what_operators_and_deploy_installed() -> None:
    operators = _helm_releases("operators")
    deployed = _helm_releases("deploy", "ENV=prod")
    assert len(operators) == 2 and len(deployed) == 1
    down = _dry_run("cluster-down", "ENV=prod")
    assert not [line for line in down if "kind " in line]

    def uninstalled_at(release: str, namespace: str) -> int:
        uninstall = f"helm uninstall {release} --namespace {namespace} "
        (index,) = [i for i, line in enumerate(down) if line.startswith(uninstall)]
        return index

    # the overlay deploy applied, deleted after the release that deploy installed and while the
    # operators still run (they finalize the Ray and Kafka objects)
    assert any(
        "kubectl kustomize kuberay/overlays/prod " in line
        for line in _dry_run("deploy", "ENV=prod")
    )
    (delete,) = [i for i, line in enumerate(down) if "kubectl delete -k" in line]
    assert down[delete].split()[3] == "kuberay/overlays/prod"
    assert max(uninstalled_at(*r) for r in deployed) < delete
    assert delete < min(uninstalled_at(*r) for r in operators)
    # undeploy is the same without the operators
    assert _dry_run("undeploy", "ENV=prod") == down[: delete + 1]


def test_cluster_down_on_dev_deletes_the_kind_cluster_and_refuses_an_unknown_env() -> None:
    assert _dry_run("cluster-down") == ["kind delete cluster --name cryptopred"]
    bad = make_kuberay("-n", "cluster-down", "ENV=staging")
    assert bad.returncode != 0 and "ENV must be dev or prod" in bad.stderr
    helped = subprocess.run(
        [tool("make"), "--no-print-directory", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert re.search(r"cluster-down\S* .*ENV=prod", helped.stdout), helped.stdout
    assert "undeploy" in helped.stdout
