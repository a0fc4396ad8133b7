"""Offline checks of the kuberay manifests: render the overlays, inspect objects, evaluate
NetworkPolicies."""
