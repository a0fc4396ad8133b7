"""`cryptopred serve deploy|status|shutdown`: the Serve application on the Ray cluster."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

from cryptopred_core.raycluster import connect_ray
from cryptopred_core.settings import SettingsError
from cryptopred_serving.deploy import base_url, delete_app, deploy_app
from cryptopred_serving.settings import ServeSettings, load_serve_settings

app = typer.Typer(help="The HTTP API on Ray Serve: deploy, status, shutdown.")
console = Console()
err_console = Console(stderr=True)


def _settings() -> ServeSettings:
    try:
        return load_serve_settings()
    except SettingsError as exc:
        err_console.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _connect(settings: ServeSettings) -> Any:
    try:
        return connect_ray(settings, log_to_driver=False)
    except ConnectionError as exc:
        err_console.print(f"error: ray: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None


@app.command()
def deploy(
    pairs: Annotated[str | None, typer.Option(help="pairs to serve, e.g. BTC/USD,ETH/USD")] = None,
    no_publisher: Annotated[bool, typer.Option(help="serve HTTP only, publish nothing")] = False,
) -> None:
    """Deploy (or update) the application and print its base URL."""
    settings = _settings()
    _connect(settings)
    try:
        url = deploy_app(settings, pairs, False if no_publisher else None)
    except Exception as exc:  # a bad override is a bad setting
        err_console.print(f"error: {exc}".splitlines()[0], markup=False)
        raise typer.Exit(2) from None
    console.print(f"serving at {url} (docs: {url}/docs)")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """The application's status and base URL (exit 1 unless it is RUNNING)."""
    from ray import serve

    settings = _settings()
    _connect(settings)
    apps = serve.status().applications
    state = apps.get(settings.serve_app_name)
    app_status = str(state.status) if state else "NOT_DEPLOYED"
    deployments = {name: str(d.status) for name, d in state.deployments.items()} if state else {}
    if as_json:
        print(
            json.dumps(
                {"status": app_status, "url": base_url(settings), "deployments": deployments}
            )
        )
    else:
        console.print(f"{settings.serve_app_name}: {app_status} at {base_url(settings)}")
        for name, value in deployments.items():
            console.print(f"  {name}: {value}")
    if "RUNNING" not in app_status:
        raise typer.Exit(1)


@app.command()
def shutdown() -> None:
    """Delete the application (Serve itself keeps running for other apps)."""
    settings = _settings()
    _connect(settings)
    delete_app(settings)
    console.print(f"deleted {settings.serve_app_name}")
