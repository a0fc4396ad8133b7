"""Demote a registered model's champion to its best baseline, and say so in MLflow.

Serving calls `demote_champion` when the champion's live calibration or skill fails (see
`cryptopred_serving.calibration`); the champion watchers then serve the baseline's version.
The tags are set before the alias moves, so whoever sees the alias moved also sees why:
the demoted version's `demoted_reason` and `demoted_at_ms`, and the registered model's
`demoted_at_ms` (which the retrain scheduler compares to notice a demotion). An MLflow run
tagged `event=demotion` in the model's experiment records the reason and both versions.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

CHAMPION = "champion"
BASELINE = "baseline"
EVENT_TAG = "event"
DEMOTION_EVENT = "demotion"
DEMOTED_AT_TAG = "demoted_at_ms"
DEMOTED_REASON_TAG = "demoted_reason"
MAX_TAG_CHARS = 5000  # MLflow's limit on a tag value


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def demote_champion(
    tracking_uri: str, name: str, reason: str, now_ms: int | None = None
) -> str | None:
    """Point `champion` of `name` at the `baseline` alias's version; that version, or None
    when nothing moved (no baseline alias, no champion, or the champion is the baseline)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    baseline = _alias_version(client, name, BASELINE)
    champion = _alias_version(client, name, CHAMPION)
    if baseline is None or champion is None or champion == baseline:
        return None
    at_ms = str(time.time_ns() // 1_000_000 if now_ms is None else now_ms)
    client.set_model_version_tag(name, champion, DEMOTED_REASON_TAG, reason[:MAX_TAG_CHARS])
    client.set_model_version_tag(name, champion, DEMOTED_AT_TAG, at_ms)
    client.set_registered_model_tag(name, DEMOTED_AT_TAG, at_ms)
    client.set_registered_model_alias(name, CHAMPION, baseline)
    log.warning("%s: champion %s demoted to baseline %s: %s", name, champion, baseline, reason)
    _log_run(client, name, reason, champion, baseline)
    return baseline


def _log_run(client: Any, name: str, reason: str, from_version: str, to_version: str) -> None:
    """The demotion as a finished MLflow run in the model's experiment."""
    experiment = client.get_experiment_by_name(name)
    experiment_id = (
        experiment.experiment_id if experiment is not None else client.create_experiment(name)
    )
    run = client.create_run(
        experiment_id,
        tags={EVENT_TAG: DEMOTION_EVENT, "mlflow.runName": f"demotion-{from_version}"},
    )
    run_id = run.info.run_id
    client.log_param(run_id, "reason", reason[:MAX_TAG_CHARS])
    client.log_param(run_id, "from_version", from_version)
    client.log_param(run_id, "to_version", to_version)
    client.set_tag(run_id, DEMOTED_REASON_TAG, reason[:MAX_TAG_CHARS])
    client.set_terminated(run_id, "FINISHED")


def demotion_tag_ms(client: Any, name: str) -> int | None:
    """The registered model's `demoted_at_ms` tag; None when it has none or does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(name).tags or {}
    except MlflowException:
        return None
    raw = tags.get(DEMOTED_AT_TAG)
    return int(raw) if raw is not None and raw.isdigit() else None
