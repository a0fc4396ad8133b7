"""The cluster targets of kuberay/Makefile.mk."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from cryptopred.testing.kuberay_render import KUBERAY, make_kuberay, one, render

MAKE_TARGETS = (
    "cluster-up",
    "cluster-down",
    "deploy",
    "port-forward",
    "ray-dashboard",
    "submit-stream",
    "submit-train",
    "build-image",
    "kind-load",
    "secrets",
    "serve-config",
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
