"""Grafana dashboards as code: Market, Predictions and Pipeline health.

`python -m cryptopred.dashboards` (or `make dashboards`) writes them as JSON into the
repository's `dashboards/` folder, which Grafana provisions (kuberay/base/grafana and
dashboards/provisioning). Edit the definitions here, not the JSON.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptopred.dashboards import health, market, predictions
from cryptopred.dashboards.grafana import Json

# file name (without .json) -> builder
BUILDERS: dict[str, Callable[[], Json]] = {
    "market": market.build,
    "predictions": predictions.build,
    "pipeline-health": health.build,
}


def build_all() -> dict[str, Json]:
    """Every dashboard by file name."""
    return {name: build() for name, build in BUILDERS.items()}


__all__ = ["BUILDERS", "build_all"]
