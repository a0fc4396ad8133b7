"""What a rehearsal pod's environment is made of: the manifest's, with the stand-ins' and the
exchange's addresses of the caller in place of the cluster's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cryptopred.rehearsal.cluster import SINGLE_MACHINE_MODE, Options, Rehearsal
from cryptopred.rehearsal.manifest import ServiceMap, on_own_volumes, read_plan
from cryptopred.rehearsal.nodes import pod_process
from cryptopred.rehearsal.run import generated_secrets
from cryptopred_testsupport.kuberay.render import render


def test_the_callers_exchange_replaces_the_config_maps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_rest, fake_ws = "http://127.0.0.1:1", "ws://127.0.0.1:2/v2"
    monkeypatch.setenv("CRYPTOPRED_KRAKEN_REST_URL", fake_rest)
    monkeypatch.setenv("CRYPTOPRED_KRAKEN_WS_URL", fake_ws)
    docs = render("dev")
    head = read_plan(docs, generated_secrets(docs)).cluster("cryptopred").head
    assert head.env["CRYPTOPRED_KRAKEN_REST_URL"] == "https://api.kraken.com"
    rehearsal = Rehearsal(Options("dev", tmp_path), say=lambda _: None)
    process = pod_process(head, {}, None, tmp_path / "pod", f"cryptopred-test-{tmp_path.name}")
    try:
        env = rehearsal.pod_env(process, ServiceMap({"mlflow:5000": "127.0.0.1:3"}))
    finally:
        process.cgroup.remove()
        shutil.rmtree(process.tmp_root, ignore_errors=True)
    assert env["CRYPTOPRED_KRAKEN_REST_URL"] == fake_rest
    assert env["CRYPTOPRED_KRAKEN_WS_URL"] == fake_ws
    assert env["CRYPTOPRED_MLFLOW_TRACKING_URI"] == "http://127.0.0.1:3"
    # the pod's /tmp (an emptyDir) is its own: cursor and state files are not shared, and
    # Ray's session (whose address file "auto" reads) is the pod's
    assert head.env["CRYPTOPRED_DATA_DIR"] == "/tmp/cryptopred"
    assert env["CRYPTOPRED_DATA_DIR"] == str(process.tmp_root / "cryptopred")
    assert env["TMPDIR"] == str(process.tmp_root)
    other = pod_process(head, {}, None, tmp_path / "other", f"cryptopred-test2-{tmp_path.name}")
    other.cgroup.remove()
    assert other.tmp_root != process.tmp_root


def test_values_under_an_empty_dir_move_to_the_pods_folder() -> None:
    env = {"A": "/tmp/x", "B": "/tmp", "C": "/tmpfile", "D": "/data/cache/y", "E": "relative"}
    volumes = {"/tmp": "/pods/p/tmp", "/data": "/pods/p/data", "/data/cache": "/pods/p/cache"}
    assert on_own_volumes(env, volumes) == {
        "A": "/pods/p/tmp/x",
        "B": "/pods/p/tmp",
        "C": "/tmpfile",
        "D": "/pods/p/cache/y",
        "E": "relative",
    }


def test_a_cluster_with_workers_is_multi_node_and_one_without_is_not(tmp_path: Path) -> None:
    docs = render("prod")
    plan = read_plan(docs, generated_secrets(docs))
    rehearsal = Rehearsal(Options("prod", tmp_path), say=lambda _: None)
    pods = {p.name: p for c in plan.clusters for p in c.pods}
    names = ["cryptopred-head", "cryptopred-serve-head", "cryptopred-serve-worker-serve-0"]
    processes = [
        pod_process(pods[n], {}, None, tmp_path / n, f"cryptopred-test-{tmp_path.name}")
        for n in names
    ]
    rehearsal.pods = processes
    try:
        envs = {p.pod.name: rehearsal.pod_env(p, ServiceMap({})) for p in processes}
    finally:
        for process in processes:
            process.cgroup.remove()
    assert envs["cryptopred-head"].get(SINGLE_MACHINE_MODE) == "0"
    assert SINGLE_MACHINE_MODE not in envs["cryptopred-serve-head"]
    assert SINGLE_MACHINE_MODE not in envs["cryptopred-serve-worker-serve-0"]
