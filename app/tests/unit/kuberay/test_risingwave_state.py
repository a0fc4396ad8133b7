"""RisingWave keeps its meta store and (dev) state store on a persistent volume in every overlay."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from cryptopred_testsupport.kuberay.render import OVERLAYS, memory, risingwave_values


def _under(path: str, directory: str) -> bool:
    return PurePosixPath(directory) in PurePosixPath(path).parents


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_risingwave_state_survives_a_pod_restart(overlay: str) -> None:
    values = risingwave_values(overlay)
    standalone = values["standalone"]
    claims = {c["metadata"]["name"]: c["spec"] for c in standalone["volumeClaimTemplates"]}
    volumes = {v["name"]: v for v in standalone.get("extraVolumes") or []}
    for mount in standalone["extraVolumeMounts"]:
        # a volume of the pod itself (emptyDir) would go with the pod: only claims hold state
        assert mount["name"] in claims and mount["name"] not in volumes, mount
    data_dirs = [m["mountPath"] for m in standalone["extraVolumeMounts"]]
    assert any(_under(values["metaStore"]["sqlite"]["path"], d) for d in data_dirs)
    local_fs = values["stateStore"]["localFs"]
    if local_fs["enabled"]:
        assert any(_under(local_fs["path"], d) for d in data_dirs)
    for spec in claims.values():
        assert spec["accessModes"] == ["ReadWriteOnce"]
        assert memory(spec["resources"]["requests"]["storage"]) >= 1024**3
        # the cluster's default storage class (Kind: local-path "standard")
        assert "storageClassName" not in spec
