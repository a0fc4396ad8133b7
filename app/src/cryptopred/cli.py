"""The `cryptopred` command line: the stack's commands, the demo, and each member's sub-commands."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from cryptopred.stack import manager
from cryptopred.stack.process import PartError
from cryptopred_core.raycluster import embedded_ray_env, keep_workers_in_this_env, prepare_ray_auth
from cryptopred_core.settings import (
    Settings,
    SettingsError,
    env_name,
    load_settings,
    settings_or_none,
)

app = typer.Typer(
    help="Real-time crypto price predictor on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def settings_or_exit(**overrides: object) -> Settings:
    """Build settings in the entry point; a bad one exits 2 with one line naming it."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        err_console.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


@app.command()
def up() -> None:
    """Start the embedded stack (parts without an external address), topics and DB schema."""
    settings = settings_or_exit()
    try:
        manager.up(settings, say=lambda line: console.print(line, markup=False))
    except PartError as exc:
        raise fail(str(exc)) from None
    _print_status(settings)


@app.command()
def down() -> None:
    """Stop the embedded parts this stack started; data under the data dir is kept."""
    settings = settings_or_exit()
    stopped = manager.down(settings, say=lambda line: console.print(line, markup=False))
    if not stopped:
        console.print("nothing was running")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show each part, a connectable address and whether it is healthy (exit 1 if not)."""
    settings = settings_or_exit()
    healthy = _print_status(settings, as_json=as_json)
    if not healthy:
        raise typer.Exit(1)


@app.command()
def env() -> None:
    """Print shell exports for Ray's and MLflow's own tools against this stack:
    `eval "$(cryptopred env)"`, then `ray job submit`, `ray job logs`, `serve status` work."""
    settings = settings_or_exit()
    for name, value in client_environ(settings).items():
        print(f"export {name}={shlex.quote(value)}")


def client_environ(settings: Settings) -> dict[str, str]:
    """What `ray`, `serve` and MLflow clients need to reach the stack `settings` name."""
    env = embedded_ray_env(settings) if settings.ray_address is None else {}
    return env | {
        "RAY_ADDRESS": settings.ray_gcs_address,
        "RAY_API_SERVER_ADDRESS": settings.ray_dashboard,  # ray job ...
        "RAY_DASHBOARD_ADDRESS": settings.ray_dashboard,  # serve ...
        "MLFLOW_TRACKING_URI": settings.mlflow_uri,
        env_name("data_dir"): str(settings.data_dir),
    }


def _print_status(settings: Settings, as_json: bool = False) -> bool:
    rows = manager.status(settings)
    if as_json:
        print(json.dumps([asdict(r) for r in rows]))
    else:
        width = max(len(r.address) for r in rows)
        for row in rows:
            health = "[green]healthy[/]" if row.healthy else "[red]down[/]"
            extra = f"  gcs {settings.ray_gcs_address}" if row.name == "ray" else ""
            console.print(
                f"{row.name:<9} {row.mode:<9} {escape(row.address):<{width}}  {health}{extra}",
                soft_wrap=True,
            )
    return all(r.healthy for r in rows)


def _register_demo() -> None:
    from cryptopred.demo.cli import demo

    app.command()(demo)


def _register_rehearsal() -> None:
    from cryptopred.rehearsal.cli import cluster_rehearsal

    app.command(name="cluster-rehearsal")(cluster_rehearsal)


def _register_components() -> None:
    """Add each member's sub-command group. Imported here, not at the top, because
    `prepare_ray_auth` must run before anything imports ray."""
    from cryptopred_ingest.cli import app as ingest_app
    from cryptopred_ingest.stream_cli import app as stream_app
    from cryptopred_serving.cli import app as serve_app
    from cryptopred_training.cli import app as train_app
    from cryptopred_training.retrain.cli import app as retrain_app

    app.add_typer(ingest_app, name="ingest")
    app.add_typer(stream_app, name="stream")
    app.add_typer(train_app, name="train")
    app.add_typer(retrain_app, name="retrain")
    app.add_typer(serve_app, name="serve")


def main() -> None:
    prepare_ray_auth(settings_or_none())  # before anything imports ray (read at import)
    keep_workers_in_this_env()  # likewise
    _register_components()
    _register_demo()
    _register_rehearsal()
    app(prog_name="cryptopred")


if __name__ == "__main__":
    main()
