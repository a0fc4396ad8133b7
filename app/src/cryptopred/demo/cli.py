"""`cryptopred demo`: bring the stack up, run every step, then show the live status view."""

from __future__ import annotations

import logging
import signal
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from cryptopred.demo.settings import DemoSource, load_demo_settings
from cryptopred.stack import manager
from cryptopred.stack.process import PartError
from cryptopred_core.settings import SettingsError

console = Console()
err_console = Console(stderr=True)


def stop_on_sigterm() -> None:
    """SIGTERM (`kill`, `docker stop`, a process manager) stops the demo the way Ctrl-C does:
    the source, the stages and the Serve app, not just this process."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def quiet_serve_logs() -> None:
    """Keep Serve's own INFO lines (started, app ready, deleting) off the terminal: they repeat
    what the demo says itself. Importing ray.serve sets its logger to INFO with a handler of
    its own, so it is imported first."""
    import ray.serve  # noqa: F401

    logging.getLogger("ray.serve").setLevel(logging.WARNING)


def demo(
    source: Annotated[
        DemoSource | None, typer.Option(help="kraken (live) or synthetic (offline)")
    ] = None,
    pairs: Annotated[str | None, typer.Option(help="comma-separated, e.g. BTC/USD,ETH/USD")] = None,
    days: Annotated[float | None, typer.Option(help="days of history to load first")] = None,
    view: Annotated[bool, typer.Option(help="show the live status view until ^C")] = True,
) -> None:
    """The whole system on the embedded stack: history -> candles and indicators -> a trained
    and promoted model per pair -> Serve -> live trades and forecasts, with a live status view.
    Ctrl-C stops what the demo started; the stack keeps running until `cryptopred down`."""
    from cryptopred.demo.flow import Demo, DemoError
    from cryptopred.demo.view import collect, render

    overrides = {"demo_source": source, "demo_pairs": pairs, "demo_history_days": days}
    try:
        settings = load_demo_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        err_console.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    quiet_serve_logs()

    def say(line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        console.print(f"[dim]{stamp}[/] {line}", soft_wrap=True, highlight=False)

    try:
        manager.up(settings, say=say)
    except PartError as exc:
        err_console.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    run = Demo(settings, say)
    stop_on_sigterm()
    try:
        # again once connected: ray.init makes SIGTERM a plain exit of this process
        run.run_to_live(connected=stop_on_sigterm)
        for name, url in run.urls().items():
            say(f"{name:<14} {url}")
        if not view:
            return
        with Live(render(collect(run)), console=console, refresh_per_second=1) as live:
            while True:
                time.sleep(settings.demo_refresh_s)
                live.update(render(collect(run)))
    except KeyboardInterrupt:
        say("stopping the demo ...")
    except DemoError as exc:
        err_console.print(f"error: {exc}", markup=False, soft_wrap=True)
        run.stop()
        raise typer.Exit(1) from None
    run.stop()
    say("stopped; the stack is still up (`make down` stops it)")
