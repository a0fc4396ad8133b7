"""Each model's training runs as MLflow keeps them: the last one, and failed runs logged here.

Every run, scheduled or not, is an MLflow run in the experiment named after the model, tagged
with what started it (`trigger`), its decision and reason, or its failure. The schedule and
`cryptopred retrain status` read the last run back from there, so they survive restarts of
the scheduler and of Ray.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cryptopred_training.demotion import DEMOTION_EVENT, EVENT_TAG
from cryptopred_training.retrain.schedule import Window

TRIGGER_TAG = "trigger"
FAILURE_TAG = "failure"
VERSION_TAG = "model_version"


@dataclass(frozen=True)
class RunRecord:
    """The outcome of one training run of a model."""

    run_id: str
    started_ms: int
    status: str  # MLflow's: FINISHED, FAILED, RUNNING, ...
    trigger: str
    decision: str  # champion, challenger or failed
    reason: str
    version: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _record(run: Any) -> RunRecord:
    tags = dict(run.data.tags)
    failed = run.info.status == "FAILED"
    return RunRecord(
        run_id=run.info.run_id,
        started_ms=int(run.info.start_time or 0),
        status=str(run.info.status),
        trigger=tags.get(TRIGGER_TAG, "manual"),
        decision="failed" if failed else tags.get("decision", "unknown"),
        reason=tags.get(FAILURE_TAG, "") if failed else tags.get("reason", ""),
        version=tags.get(VERSION_TAG),
    )


def last_run(client: Any, name: str) -> RunRecord | None:
    """The most recently started run of model `name`; None when it was never trained."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`mlflow.parentRunId` IS NULL",  # not Ray Tune's nested trials
        order_by=["attribute.start_time DESC"],
        max_results=50,
    )
    # a demotion is logged as a run of its own in the experiment; it trained nothing
    trained = [r for r in runs if r.data.tags.get(EVENT_TAG) != DEMOTION_EVENT]
    return _record(trained[0]) if trained else None


def champion_version(client: Any, name: str) -> str | None:
    """The version the `champion` alias of `name` points at; None when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, "champion").version)
    except MlflowException:
        return None


def log_failed_run(
    client: Any,
    *,
    name: str,
    pair: str,
    candle_seconds: int,
    trigger: str,
    reason: str,
    window: Window | None,
) -> RunRecord:
    """Log a run that failed before it could log itself, with its reason."""
    experiment = client.get_experiment_by_name(name)
    experiment_id = (
        experiment.experiment_id if experiment is not None else client.create_experiment(name)
    )
    tags = {
        "pair": pair,
        "candle_seconds": str(candle_seconds),
        TRIGGER_TAG: trigger,
        "decision": "failed",
        FAILURE_TAG: reason[:4000],
    }
    run = client.create_run(experiment_id, tags=tags, run_name=f"{name}-failed")
    if window is not None:
        client.log_param(run.info.run_id, "since_ms", window.since_ms)
        client.log_param(run.info.run_id, "until_ms", window.until_ms)
    client.set_terminated(run.info.run_id, status="FAILED")
    return _record(client.get_run(run.info.run_id))
