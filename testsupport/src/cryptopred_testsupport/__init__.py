"""Test support for the workspace: the pytest plugin with real-service fixtures, fakes on loopback
(Kraken, HAProxy), stream and candle cases, soak faults and the kuberay manifest checks.

A dev-only member: no runtime package imports it."""
