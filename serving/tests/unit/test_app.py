"""The application graph `build_app` composes (no Ray started: binding only builds it)."""

from __future__ import annotations

from typing import Any

import pytest

from cryptopred_serving.app import build_app


def _deployments(app: Any) -> dict[str, Any]:
    """Name → deployment of every deployment bound into the graph."""
    found: dict[str, Any] = {}
    todo = [app]
    while todo:
        bound = todo.pop()._bound_deployment
        found[bound.name] = bound
        todo += [a for a in bound.init_args if type(a).__name__ == "Application"]
    return found


def test_the_graph_has_the_api_and_the_publisher_with_its_model_server() -> None:
    assert set(_deployments(build_app({"pairs": ["BTC/USD"]}))) == {
        "PredictionAPI",
        "ModelServer",
        "PredictionPublisher",
    }
    no_publisher = build_app({"pairs": ["BTC/USD"], "publisher_enabled": False})
    assert set(_deployments(no_publisher)) == {"PredictionAPI"}  # it predicts in-process


@pytest.mark.parametrize("enabled", [False, True])
def test_the_access_log_setting_reaches_every_deployment(enabled: bool) -> None:
    deployments = _deployments(build_app({"pairs": ["BTC/USD"], "serve_access_log": enabled}))
    assert {name: d.logging_config["enable_access_log"] for name, d in deployments.items()} == {
        name: enabled for name in deployments
    }


def test_the_access_log_is_off_unless_asked_for() -> None:
    deployments = _deployments(build_app({"pairs": ["BTC/USD"]}))
    assert not any(d.logging_config["enable_access_log"] for d in deployments.values())
