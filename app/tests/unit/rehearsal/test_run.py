"""The Serve node failure refuses a Serve cluster with no worker pods (dev's: its replicas run
on the head, so losing that node is losing Serve) instead of killing it."""

from __future__ import annotations

from pathlib import Path

from cryptopred.rehearsal.cluster import Options, Rehearsal
from cryptopred.rehearsal.faults import API_REPLICAS, NodeFailure
from cryptopred.rehearsal.manifest import read_plan
from cryptopred.rehearsal.run import generated_secrets, serve_node_failure
from cryptopred_testsupport.kuberay.render import render


def test_a_serve_cluster_without_workers_is_refused_not_killed(tmp_path: Path) -> None:
    docs = render("dev")
    rehearsal = Rehearsal(Options("dev", tmp_path), say=lambda _: None)
    rehearsal.cgroup_prefix = f"cryptopred-test-run-{tmp_path.name}"
    rehearsal.plan_pods(read_plan(docs, generated_secrets(docs)))
    killed: list[str] = []
    rehearsal.kill_pod = killed.append  # type: ignore[method-assign]
    try:
        failure = NodeFailure(actors=API_REPLICAS, during="serve", after_s=0)
        found = serve_node_failure(rehearsal, "cryptopred-serve", "http://127.0.0.1:9/", failure)
    finally:
        for process in rehearsal.pods:
            process.cgroup.remove()
    (check,) = found
    assert not check.ok and "no worker pods" in check.detail
    assert killed == []
