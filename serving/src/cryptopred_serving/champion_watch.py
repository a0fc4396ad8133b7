"""Which model version is champion for each (pair, candle_seconds), polled from MLflow.

Serving follows the registry's `champion` alias: a watcher thread re-reads it every
`model_poll_s` and, when it moves, hands the new version to a callback (which warms the model
up before traffic switches), so a swap never fails a request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptopred_serving.pairs import model_name

log = logging.getLogger(__name__)

CHAMPION = "champion"
BASELINE = "baseline"  # the latest run's best baseline: what live skill is measured against


@dataclass(frozen=True)
class Champion:
    """One registered model version that the `champion` alias points at."""

    name: str
    version: str
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        """The id the model server multiplexes on: `<name>/<version>`."""
        return f"{self.name}/{self.version}"

    @property
    def window_steps(self) -> int:
        return int(self.tags.get("window_steps", "0"))

    @property
    def horizon_seconds(self) -> tuple[int, ...]:
        raw = self.tags.get("horizon_seconds", "")
        return tuple(int(h) for h in raw.split(",") if h)


def lookup_champion(
    client: Any, name: str, alias: str = CHAMPION, with_metrics: bool = True
) -> Champion | None:
    """The version `alias` (the champion by default) of `name` points at, or None when the
    model or the alias does not exist yet; `with_metrics` adds its run's metrics."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    metrics: dict[str, float] = {}
    if version.run_id and with_metrics:
        try:
            metrics = dict(client.get_run(version.run_id).data.metrics)
        except MlflowException:
            metrics = {}
    return Champion(
        name=name,
        version=str(version.version),
        run_id=version.run_id,
        tags=dict(version.tags or {}),
        metrics=metrics,
    )


class ChampionWatcher:
    """Keeps the current champion of every served model, re-reading the alias periodically."""

    def __init__(
        self,
        tracking_uri: str,
        pairs: list[str],
        candle_seconds: list[int],
        poll_s: float,
        on_change: Callable[[Champion], None] | None = None,
    ) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.names = {(p, c): model_name(p, c) for p in pairs for c in candle_seconds}
        self.poll_s = poll_s
        self.on_change = on_change
        self._current: dict[str, Champion] = {}
        self._baselines: dict[str, Champion | None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # set after the first pass that looked every name up and warmed every champion found
        self.ready = threading.Event()
        # the first pass runs in the thread too: a Serve replica's constructor runs inside an
        # event loop, where `on_change` could not wait for a model call
        self._thread = threading.Thread(target=self._loop, name="champions", daemon=True)
        self._thread.start()

    def refresh(self) -> bool:
        """Look every name up, warm and switch to new versions; True when nothing failed."""
        complete = True
        for name in self.names.values():
            try:
                found = lookup_champion(self.client, name)
            except Exception as exc:  # registry unreachable: keep serving what we have
                log.warning("champion lookup for %s failed: %s", name, exc)
                complete = False
                continue
            try:
                baseline = lookup_champion(self.client, name, BASELINE, with_metrics=False)
            except Exception as exc:  # keep the baseline we knew
                log.warning("baseline lookup for %s failed: %s", name, exc)
            else:
                with self._lock:
                    self._baselines[name] = baseline
            with self._lock:
                before = self._current.get(name)
            if found is None or (before is not None and before.version == found.version):
                continue
            if self.on_change is not None:
                try:
                    self.on_change(found)  # e.g. warm the model up before switching
                except Exception as exc:
                    log.warning("warming %s failed, keeping the old version: %s", found, exc)
                    complete = False
                    continue
            with self._lock:
                self._current[name] = found
            log.info("champion of %s is now version %s", name, found.version)
        return complete

    def _loop(self) -> None:
        while True:
            if self.refresh():
                self.ready.set()
            if self._stop.wait(self.poll_s):
                return

    def get(self, pair: str, candle_seconds: int) -> Champion | None:
        name = self.names.get((pair, candle_seconds))
        if name is None:
            return None
        with self._lock:
            return self._current.get(name)

    def baseline(self, pair: str, candle_seconds: int) -> Champion | None:
        """The version the `baseline` alias pointed at on the last look; None when none."""
        name = self.names.get((pair, candle_seconds))
        if name is None:
            return None
        with self._lock:
            return self._baselines.get(name)

    def stop(self) -> None:
        self._stop.set()
