"""Offline checks of the KubeRay deployment in kuberay/ (nothing here starts a service)."""
