"""The live feed on the cluster: the stream RayJob starts the live Kraken source as a restartable
actor, configured from the ConfigMap with the settings `cryptopred ingest live` reads, and its
state file lies on a writable volume of the pod it runs in."""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath

import pytest

from cryptopred_ingest.settings import IngestSettings
from cryptopred_ingest.stream.job import build_parser
from cryptopred_testsupport.kuberay.render import (
    OVERLAYS,
    Obj,
    configmap_settings,
    groups_offering,
    one,
    render,
)

STREAM_MODULE = ["python", "-m", "cryptopred_ingest.stream.job"]


def _cluster_env(docs: list[Obj]) -> dict[str, str]:
    data: dict[str, str] = one(docs, "ConfigMap", "cryptopred-env")["data"]
    return data


def writable_dirs(pod: Obj, container: Obj) -> list[PurePosixPath]:
    """Mount paths of the container's writable emptyDirs and claims."""
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    return [
        PurePosixPath(m["mountPath"])
        for m in container.get("volumeMounts") or []
        if not m.get("readOnly")
        and {"emptyDir", "persistentVolumeClaim"} & volumes.get(m["name"], {}).keys()
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_stream_job_starts_the_live_source(overlay: str) -> None:
    stream = one(render(overlay), "RayJob", "stream")
    argv = shlex.split(stream["spec"]["entrypoint"])
    assert argv[:3] == STREAM_MODULE
    args = build_parser().parse_args(argv[3:])
    assert args.live_source, "the stream RayJob does not start the live Kraken source"
    assert not args.detach  # the job (and its submitter) follows the actors until stopped


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_live_source_reads_pairs_and_kraken_urls_from_the_configmap(overlay: str) -> None:
    docs = render(overlay)
    env = _cluster_env(docs)
    for name in ("CRYPTOPRED_PAIRS", "CRYPTOPRED_KRAKEN_WS_URL", "CRYPTOPRED_KRAKEN_REST_URL"):
        assert name in env, f"{name} is not in the ConfigMap cryptopred-env"
    settings = configmap_settings(docs, IngestSettings)
    assert settings.kraken_ws_url == "wss://ws.kraken.com/v2"
    assert settings.kraken_rest_url == "https://api.kraken.com"
    assert settings.pairs == env["CRYPTOPRED_PAIRS"].split(",")
    assert settings.actor_max_restarts == -1  # Ray restarts the source whenever it dies


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_live_source_state_lies_on_a_writable_volume_of_the_pipeline_head(
    overlay: str,
) -> None:
    docs = render(overlay)
    stream = one(docs, "RayJob", "stream")
    cluster = one(docs, "RayCluster", stream["spec"]["clusterSelector"]["ray.io/cluster"])
    # source actors ask one unit of the ConfigMap's source resource, which only the pipeline
    # head offers: the source (and its state file) stays on the head's volume
    resource = configmap_settings(docs, IngestSettings).source_resource
    assert resource
    offering = [(cluster, group) for cluster, group, _, _ in groups_offering(docs, resource)]
    assert offering == [("cryptopred", "head")]
    pod = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"configMapRef": {"name": "cryptopred-env"}} in container["envFrom"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    state_file = configmap_settings(docs, IngestSettings).data_dir / "ingest" / "live-state.json"
    mounts = writable_dirs(pod, container)
    assert any(PurePosixPath(state_file).is_relative_to(m) for m in mounts), (
        f"{state_file} is not under a writable volume of the pipeline head: {mounts}"
    )


def test_writable_dirs_leave_out_read_only_and_config_mounts() -> None:
    pod: Obj = {
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "scripts", "configMap": {"name": "x"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "d"}},
        ]
    }
    container: Obj = {
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "scripts", "mountPath": "/opt/cryptopred"},
            {"name": "data", "mountPath": "/data", "readOnly": True},
        ]
    }
    assert writable_dirs(pod, container) == [PurePosixPath("/tmp")]
