"""Deploy the Serve application on a connected Ray cluster (used by the CLI and the demo)."""

from __future__ import annotations

import json
from typing import Any

from cryptopred_serving.settings import ServeSettings, replica_settings_json


def base_url(settings: ServeSettings) -> str:
    return f"http://{settings.serve_host}:{settings.serve_port}"


def deploy_app(
    settings: ServeSettings, pairs: str | None = None, publisher_enabled: bool | None = None
) -> str:
    """Start Serve's proxy on the configured address, (re)deploy the app; returns its base URL.

    Ray must be initialised. Settings given explicitly (not read from the environment) travel
    to the deployments. A bad override raises ValueError from `build_app`.
    """
    from ray import serve

    from cryptopred_serving.app import build_app

    serve.start(http_options={"host": settings.serve_host, "port": settings.serve_port})
    given = json.loads(replica_settings_json(settings))  # secrets in the clear, not masked
    args: dict[str, Any] = {name: given[name] for name in settings.model_fields_set}
    if pairs:
        args["pairs"] = pairs
    if publisher_enabled is not None:
        args["publisher_enabled"] = publisher_enabled
    application = build_app(args)
    serve.run(application, name=settings.serve_app_name, route_prefix="/")
    return base_url(settings)


def delete_app(settings: ServeSettings) -> None:
    from ray import serve

    serve.delete(settings.serve_app_name)
