"""kuberay/README.md's Troubleshooting: each case has commands, and they name real objects."""

from __future__ import annotations

import re

from cryptopred_testsupport.kuberay.render import (
    KUBERAY,
    Obj,
    of_kind,
    one,
    pod_specs,
    render,
    risingwave_values,
)

CASES = ("Pods Pending", "Image pulls", "OOMKilled", "RisingWave unreachable")


def _section() -> str:
    text = (KUBERAY / "README.md").read_text()
    found = re.search(r"^## Troubleshooting\n(.*?)(?=^## )", text, re.S | re.M)
    assert found, "kuberay/README.md has no Troubleshooting section"
    return found[1]


def test_every_case_has_kubectl_commands() -> None:
    section = _section()
    starts = [section.index(f"**{case}") for case in CASES]
    assert starts == sorted(starts)
    for case, start, end in zip(CASES, starts, [*starts[1:], len(section)], strict=True):
        blocks = re.findall(r"```bash\n(.*?)```", section[start:end], re.S)
        assert blocks and "kubectl -n cryptopred" in blocks[0], case


def test_the_commands_name_objects_the_manifests_make() -> None:
    section = _section()
    dev, prod = render("dev"), render("prod")
    values = risingwave_values("dev")
    # the chart's names follow fullnameOverride
    assert f"svc/{values['fullnameOverride']} " in section
    assert f"statefulset/{values['fullnameOverride']}-standalone" in section
    claim = values["standalone"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert f"{claim}-{values['fullnameOverride']}-standalone-0" in section
    label = "cryptopred.io/component"
    assert f"-l {label}={values['standalone']['podLabels'][label]}" in section
    one(dev, "Job", "risingwave-init")
    one(dev, "NetworkPolicy", "risingwave-namespace-only")
    assert "job/risingwave-init" in section and "risingwave-namespace-only" in section
    (cluster,) = of_kind(dev, "RayCluster")
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["name"]
    assert f"-c {head}" in section
    secrets = {s["name"] for d in prod for s in _pull_secrets(d)}
    assert secrets and all(f"get secret {name}" in section for name in secrets)
    assert "rayjob stream" in section
    one(dev, "RayJob", "stream")


def _pull_secrets(obj: Obj) -> list[dict[str, str]]:
    return [s for _, pod, _ in pod_specs(obj) for s in pod.get("imagePullSecrets", [])]
