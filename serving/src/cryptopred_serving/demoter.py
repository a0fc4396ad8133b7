"""Carry out the calibration monitor's demotions off the publisher's thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from cryptopred_serving.calibration import CalibrationMonitor, Demotion

log = logging.getLogger(__name__)

# (tracking URI, model name, reason) -> the version now champion, or None when nothing moved
DemoteAction = Callable[[str, str, str], str | None]


def _registry_demote(tracking_uri: str, name: str, reason: str) -> str | None:
    from cryptopred_training.demotion import demote_champion

    return demote_champion(tracking_uri, name, reason)


class Demoter:
    """Runs each demotion once, in a thread of its own, so the publisher never waits for the
    registry. A demotion that fails is forgotten by the monitor, which may decide it again."""

    def __init__(
        self,
        tracking_uri: str,
        monitor: CalibrationMonitor,
        action: DemoteAction = _registry_demote,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.monitor = monitor
        self.action = action
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demoter")

    def __call__(self, decision: Demotion) -> Future[str | None]:
        return self._pool.submit(self._demote, decision)

    def _demote(self, decision: Demotion) -> str | None:
        try:
            moved_to = self.action(self.tracking_uri, decision.model_name, decision.reason)
        except Exception as exc:
            log.warning("demoting %s failed: %s", decision.model_name, exc)
            self.monitor.forget(decision.model_name, decision.model_version)
            return None
        if moved_to is None:
            log.warning("%s: no baseline to demote %s to", decision.model_name, decision)
        else:
            log.warning("%s: champion is now baseline version %s", decision.model_name, moved_to)
        return moved_to

    def close(self) -> None:
        self._pool.shutdown(wait=False)
