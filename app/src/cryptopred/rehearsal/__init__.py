"""The cluster rehearsal: what the KubeRay manifests describe, started on this machine."""
