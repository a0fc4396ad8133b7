"""The cluster targets of kuberay/Makefile.mk."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from cryptopred.testing.kuberay_render import KUBERAY, ROOT, one, render, tool

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


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    # Without the flags of an outer `make test` (e.g. -n, -j or variable overrides).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        [tool("make"), "--no-print-directory", "-f", "kuberay/Makefile.mk", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_makefile_has_the_cluster_targets() -> None:
    makefile = (KUBERAY / "Makefile.mk").read_text()
    for target in MAKE_TARGETS:
        assert re.search(rf"^{target}:.*## ", makefile, re.M), f"no documented target {target}"
    assert "ray job submit" in makefile and "$(KIND) create cluster" in makefile


def test_make_deploy_refuses_an_unknown_env_and_picks_the_overlay() -> None:
    bad = _make("-n", "deploy", "ENV=staging")
    assert bad.returncode != 0 and "ENV must be dev or prod" in bad.stderr
    prod = _make("-n", "deploy", "ENV=prod")
    assert prod.returncode == 0, prod.stderr
    assert "kubectl kustomize kuberay/overlays/prod" in prod.stdout
    assert "-f kuberay/overlays/prod/risingwave-values.yaml" in prod.stdout
    dev = _make("-n", "deploy", "ENV=dev")
    assert dev.returncode == 0 and "risingwave-values.yaml" not in dev.stdout


def test_dashboards_configmap_holds_every_json_file(tmp_path: Path) -> None:
    (tmp_path / "market.json").write_text('{"title": "Market"}')
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "health.json").write_text('{"title": "Pipeline health"}')
    (tmp_path / "notes.md").write_text("not a dashboard")
    done = _make("-s", "kuberay-dashboards-yaml", f"DASHBOARDS_DIR={tmp_path}")
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
    default = _make("-n", "submit-train")
    assert default.returncode == 0, default.stderr
    assert "--workers 2 --trials 1" in default.stdout
    searched = _make("-n", "submit-train", "TRAIN_TRIALS=6")
    assert searched.returncode == 0 and "--trials 6" in searched.stdout
