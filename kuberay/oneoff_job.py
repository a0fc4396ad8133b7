"""A RayJob that runs now, on a Ray cluster of its own, from the RayCronJob `retrain`.

`make submit-train` pipes `kubectl get raycronjob retrain -o json` through this script into
`kubectl create -f -`: the job template (its rayClusterSpec, deadline, deletion rules and
submitter pod) with the given entrypoint, so a training run by hand runs where the scheduled
ones do, never on the pipeline's RayCluster.

    kubectl get raycronjob retrain -o json | python kuberay/oneoff_job.py -- cryptopred train ...
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from typing import Any

Obj = dict[str, Any]


def one_off_job(cron: Obj, entrypoint: str, name_prefix: str = "train-") -> Obj:
    """The RayJob of `cron`'s job template with `entrypoint`, named `<name_prefix><random>`."""
    if cron.get("kind") != "RayCronJob":
        raise ValueError(f"expected a RayCronJob, got {cron.get('kind')!r}")
    spec = copy.deepcopy(cron["spec"]["jobTemplate"])
    if "rayClusterSpec" not in spec:
        raise ValueError("the RayCronJob's job template has no rayClusterSpec of its own")
    spec["entrypoint"] = entrypoint
    metadata = cron.get("metadata", {})
    labels = dict(metadata.get("labels", {}))
    labels["cryptopred.io/started-by"] = "submit-train"
    return {
        "apiVersion": cron.get("apiVersion", "ray.io/v1"),
        "kind": "RayJob",
        "metadata": {"generateName": name_prefix, "labels": labels},
        "spec": spec,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name-prefix", default="train-")
    parser.add_argument("entrypoint", nargs="+", help="the job's entrypoint (after --)")
    args = parser.parse_args(argv)
    job = one_off_job(json.load(sys.stdin), " ".join(args.entrypoint), args.name_prefix)
    json.dump(job, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
