"""Ray Tune search (`cryptopred train --trials N`): ASHA over size, window and learning rate.

Every trial fits the transformer on the run's train split with `steps.fit` and reports its
validation loss after each epoch (`tune.report`); ASHA (time attribute `epoch`) stops the
trials that trail at each rung. The trials' points come from `tune_search.sample_points`
(seeded) and are logged afterwards as nested MLflow runs under the training run, whose best
point then trains the model that faces the gate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryptopred_training.config import TrainConfig
from cryptopred_training.features import (
    Normalizer,
    Split,
    WindowSource,
    chronological_split,
    valid_window_ends,
)
from cryptopred_training.flow import PreparedData, fit_normalizer, new_transformer, with_window
from cryptopred_training.steps import EpochReport, fit
from cryptopred_training.tune_search import SearchSpace, TrialPoint, apply_point, sample_points

METRIC = "val_loss"
TIME_ATTR = "epoch"
PARENT_RUN_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class TuneOptions:
    """How many trials, how many at once and what each one may use."""

    trials: int
    storage_dir: Path
    run_name: str
    max_concurrent_trials: int = 1
    cpus_per_trial: float = 1.0
    use_gpu: bool = False  # one GPU per trial
    grace_period: int = 1  # epochs every trial runs before ASHA may stop it
    reduction_factor: int = 2

    def __post_init__(self) -> None:
        if self.trials < 1 or self.max_concurrent_trials < 1:
            raise ValueError("trials and max_concurrent_trials must be >= 1")
        if self.grace_period < 1 or self.reduction_factor < 2:
            raise ValueError("grace_period must be >= 1 and reduction_factor >= 2")


@dataclass(frozen=True)
class TrialInputs:
    """What every trial trains on: the features, the split and the normaliser of the run."""

    data: PreparedData
    split: Split
    normalizer: Normalizer
    config: TrainConfig
    use_gpu: bool
    threads: int


@dataclass(frozen=True)
class TrialOutcome:
    trial_id: str
    point: TrialPoint
    val_losses: tuple[float, ...]  # after each epoch it ran, in order

    @property
    def best_val_loss(self) -> float:
        return min(self.val_losses, default=float("inf"))


@dataclass(frozen=True)
class TuneOutcome:
    """The trials in the order they were sampled, the best one and the scheduler used."""

    trials: tuple[TrialOutcome, ...]
    best: TrialOutcome
    scheduler: str
    max_t: int
    grace_period: int

    def params(self) -> dict[str, Any]:
        """Parameters of the training run: the search and the best trial's point."""
        return {
            "tune_trials": len(self.trials),
            "tune_scheduler": self.scheduler,
            "tune_metric": METRIC,
            "tune_max_t": self.max_t,
            "tune_grace_period": self.grace_period,
            "tune_best_trial_id": self.best.trial_id,
            **{f"tuned_{key}": value for key, value in self.best.point.params().items()},
        }

    def metrics(self) -> dict[str, float]:
        return {"tune_best_val_loss": self.best.best_val_loss}


def best_trial(trials: tuple[TrialOutcome, ...]) -> TrialOutcome:
    """The lowest validation loss any epoch reached; the earlier trial on a tie."""
    if not trials:
        raise ValueError("no trials to choose from")
    return min(trials, key=lambda t: t.best_val_loss)


def tuning_inputs(
    prepared: PreparedData,
    config: TrainConfig,
    space: SearchSpace,
    use_gpu: bool,
    threads: int,
) -> TrialInputs:
    """The run's prepared series and its chronological split at the space's shortest window:
    it has the most window ends, so its test split starts no later than any trial window's,
    and no trial sees test rows."""
    data = with_window(prepared, min(space.window_steps))
    split = chronological_split(
        data.ends, config.train_fraction, config.validation_fraction, max(data.steps)
    )
    return TrialInputs(data, split, fit_normalizer(data, split.train), config, use_gpu, threads)


def trial_sources(inputs: TrialInputs, window_steps: int) -> tuple[WindowSource, WindowSource]:
    """Train and validation windows of one window length (ends valid for it only)."""
    data = inputs.data
    valid = valid_window_ends(data.features, data.targets, window_steps)
    train_ends = inputs.split.train[np.isin(inputs.split.train, valid)]
    validation_ends = inputs.split.validation[np.isin(inputs.split.validation, valid)]
    return tuple(  # type: ignore[return-value]
        WindowSource.build(data.features, data.targets, ends, inputs.normalizer, window_steps)
        for ends in (train_ends, validation_ends)
    )


def train_trial(tune_config: dict[str, Any], inputs: TrialInputs) -> None:
    """One Tune trial: fit the point's transformer, reporting `val_loss` after each epoch."""
    from ray import tune

    torch.set_num_threads(inputs.threads)
    point = TrialPoint.from_tune(tune_config)
    config = apply_point(inputs.config, point)
    train, validation = trial_sources(inputs, point.window_steps)
    model = new_transformer(inputs.data, config, train)
    device = torch.device("cuda") if inputs.use_gpu and torch.cuda.is_available() else None

    def report(epoch: EpochReport) -> None:
        tune.report(
            {
                TIME_ATTR: epoch.epoch + 1,
                METRIC: epoch.validation["loss"],
                "train_loss": epoch.train_loss,
                "val_mae": epoch.validation["mae"],
            }
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        fit(model, train, validation, config, on_epoch=report, device=device)


def run_tune(
    data: PreparedData, config: TrainConfig, space: SearchSpace, options: TuneOptions
) -> TuneOutcome:
    """Run `options.trials` trials of `space` (seeded by `config.seed`) with ASHA on the
    connected Ray cluster; RuntimeError when a trial failed."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    points = sample_points(space, options.trials, config.seed)
    inputs = tuning_inputs(
        data, config, space, options.use_gpu, max(1, int(options.cpus_per_trial))
    )
    grace_period = min(options.grace_period, config.max_epochs)
    scheduler = ASHAScheduler(
        time_attr=TIME_ATTR,
        max_t=config.max_epochs,
        grace_period=grace_period,
        reduction_factor=options.reduction_factor,
    )
    resources = {"cpu": options.cpus_per_trial, "gpu": 1 if options.use_gpu else 0}
    trainable = tune.with_resources(tune.with_parameters(train_trial, inputs=inputs), resources)
    param_space = {
        "size": tune.choice([size.label for size in space.sizes]),
        "window_steps": tune.choice(list(space.window_steps)),
        "learning_rate": tune.loguniform(space.learning_rate_min, space.learning_rate_max),
    }
    # each point to evaluate replaces one of the num_samples random samples
    search = BasicVariantGenerator(points_to_evaluate=[point.to_tune() for point in points])
    options.storage_dir.mkdir(parents=True, exist_ok=True)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="min",
            scheduler=scheduler,
            search_alg=search,
            num_samples=options.trials,
            max_concurrent_trials=options.max_concurrent_trials,
        ),
        run_config=tune.RunConfig(
            name=options.run_name, storage_path=str(options.storage_dir), verbose=0
        ),
    )
    results = tuner.fit()
    trials = []
    for index in range(len(results)):
        result = results[index]
        if result.error is not None:
            raise RuntimeError(f"Ray Tune trial failed: {result.error}") from result.error
        trials.append(_trial_outcome(result))
    # Tune's trial ids end in a zero-padded counter: their order is the order of the points
    ordered = tuple(sorted(trials, key=lambda t: t.trial_id))
    return TuneOutcome(
        ordered, best_trial(ordered), type(scheduler).__name__, config.max_epochs, grace_period
    )


def _trial_outcome(result: Any) -> TrialOutcome:
    history = result.metrics_dataframe
    losses: tuple[float, ...] = ()
    if history is not None and METRIC in history:
        losses = tuple(float(v) for v in history.sort_values(TIME_ATTR)[METRIC])
    return TrialOutcome(
        str(result.metrics.get("trial_id", "")), TrialPoint.from_tune(result.config), losses
    )


def start_parent_run(tracking_uri: str, name: str, tags: dict[str, str]) -> str:
    """A new MLflow run of experiment `name` for the trials to nest under; its id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.set_experiment(name)
    run = MlflowClient(tracking_uri=tracking_uri).create_run(experiment.experiment_id, tags=tags)
    return str(run.info.run_id)


def log_trials(tracking_uri: str, parent_run_id: str, outcome: TuneOutcome) -> list[str]:
    """One finished MLflow run per trial, nested under `parent_run_id`: the point as params,
    `val_loss` per epoch (step = epoch, from 0), tags `trial_id`, `tune_scheduler` and
    `best_trial`. Returns the runs' ids in trial order."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(parent_run_id)
    now_ms = int(time.time() * 1000)
    run_ids = []
    for index, trial in enumerate(outcome.trials):
        tags = {
            PARENT_RUN_TAG: parent_run_id,
            "trial_id": trial.trial_id,
            "tune_scheduler": outcome.scheduler,
            "best_trial": str(trial is outcome.best).lower(),
        }
        run = client.create_run(
            parent.info.experiment_id, run_name=f"trial-{index}-{trial.trial_id}", tags=tags
        )
        run_id = str(run.info.run_id)
        metrics = [Metric(METRIC, v, now_ms, step) for step, v in enumerate(trial.val_losses)]
        metrics.append(Metric("epochs", float(len(trial.val_losses)), now_ms, 0))
        if trial.val_losses:
            metrics.append(Metric("best_val_loss", trial.best_val_loss, now_ms, 0))
        params = [Param(k, str(v)) for k, v in trial.point.params().items()]
        client.log_batch(run_id, metrics=metrics, params=params, tags=[RunTag("trial", str(index))])
        client.set_terminated(run_id)
        run_ids.append(run_id)
    return run_ids
