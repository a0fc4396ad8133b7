"""Host ports of the cluster path (port-forward, Kind, RAY_JOB_ADDRESS) vs the embedded stack."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

import pytest
import yaml

from cryptopred.stack.parts import all_parts
from cryptopred_core.settings import ENV_PREFIX, Settings
from cryptopred_serving.settings import ServeSettings
from cryptopred_testsupport.kuberay.render import KUBERAY, make_kuberay, one, render

_FORWARD = re.compile(r"port-forward svc/(?P<svc>[\w.-]+) (?P<local>\d+):(?P<remote>\d+)")


def _make_dry_run(*args: str) -> str:
    done = make_kuberay("-n", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _embedded_ports(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """Every port `cryptopred up` and `cryptopred serve` listen on, at their defaults."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    ports = {port for part in all_parts(settings) for port in part.ports()}
    ports.add(ServeSettings(_env_file=None).serve_port)  # type: ignore[call-arg]
    return ports


def _forwards(*targets: str) -> dict[tuple[str, int], int]:
    """(service, cluster port) -> local port of every `kubectl port-forward` the targets run."""
    text = _make_dry_run(*targets)
    return {(m["svc"], int(m["remote"])): int(m["local"]) for m in _FORWARD.finditer(text)}


def _kind_host_ports() -> dict[int, int]:
    """Kind's node port -> host port."""
    config = yaml.safe_load((KUBERAY / "kind-config.yaml").read_text())
    (node,) = config["nodes"]
    return {m["containerPort"]: m["hostPort"] for m in node["extraPortMappings"]}


def _job_address_port(env: str) -> int:
    text = _make_dry_run("submit-stream", f"ENV={env}")
    address = re.search(r"ray job submit --address (\S+)", text)
    assert address, text
    port = urlsplit(address[1]).port
    assert port is not None
    return port


def test_local_ports_do_not_collide_with_the_embedded_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    embedded = _embedded_ports(monkeypatch)
    assert {5000, 8265} <= embedded  # the parts are read, not an empty set
    forwards = _forwards("port-forward")
    assert len(forwards) >= 6
    local = set(forwards.values())
    kind = set(_kind_host_ports().values())
    assert len(local) == len(forwards), "two forwards share a local port"
    assert not local & embedded, sorted(local & embedded)
    assert not kind & embedded, sorted(kind & embedded)
    assert not local & kind, sorted(local & kind)
    assert _forwards("ray-dashboard") == {k: v for k, v in forwards.items() if k[1] == 8265}


def test_ray_job_address_reaches_the_pipeline_dashboard_without_the_embedded_ray(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    embedded = _embedded_ports(monkeypatch)
    # prod: the forwarded dashboard of the pipeline's RayCluster
    assert _job_address_port("prod") == _forwards("ray-dashboard")[("cryptopred-head-svc", 8265)]
    # dev: Kind's host port of the dashboard's NodePort Service
    service = one(render("dev"), "Service", "ray-dashboard-nodeport")
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == 8265
    assert _job_address_port("dev") == _kind_host_ports()[port["nodePort"]]
    assert not {_job_address_port("dev"), _job_address_port("prod")} & embedded
