"""One training run: read and validate, connect Ray, fit with Ray Train, evaluate, log, decide."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from cryptopred_core.raycluster import connect_ray
from cryptopred_training.config import TrainConfig
from cryptopred_training.dataset import DataValidationError
from cryptopred_training.features import chronological_split
from cryptopred_training.flow import (
    PreparedData,
    TrainingOutcome,
    fit_normalizer,
    prepare_data,
    train_and_decide,
    with_window,
)
from cryptopred_training.ray_fit import RayFitOptions, numbered_ray_fitter, ray_fitter
from cryptopred_training.settings import TrainSettings, model_name
from cryptopred_training.source import read_indicator_frame
from cryptopred_training.steps import EpochReport
from cryptopred_training.tracking import LoggedModel, log_training
from cryptopred_training.tune import TuneOptions, TuneOutcome
from cryptopred_training.tune_search import SearchSpace, apply_point

Say = Callable[[str], None]


@dataclass(frozen=True)
class TrainRequest:
    pair: str
    candle_seconds: int
    horizon_seconds: tuple[int, ...] | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    num_workers: int = 1
    use_gpu: bool = False
    resume: bool = False
    trigger: str = "manual"  # what started the run: manual, schedule or demotion
    trials: int = 1  # Ray Tune trials before the fit; 1: no search

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if self.trials > 1 and self.resume:
            raise ValueError("--resume cannot be combined with a Ray Tune search (--trials > 1)")


@dataclass(frozen=True)
class TrainReport:
    name: str
    outcome: TrainingOutcome
    logged: LoggedModel
    fit_seconds: float
    total_seconds: float
    tune: TuneOutcome | None = None  # the search, when --trials > 1


def share_of_free_cpus(free_cpus: float, num_workers: int) -> float:
    """Whole CPUs per worker when the free ones allow, else a tenth-rounded share (at least a
    tenth): a worker asking for more than is free would wait forever."""
    share = free_cpus / num_workers
    if share >= 1:
        return float(int(share))
    return max(0.1, int(share * 10) / 10)


def cpus_per_worker(settings: TrainSettings, num_workers: int) -> float:
    """The configured CPUs per worker, else the cluster's free CPUs shared among the workers
    (stage actors and Serve replicas on the same cluster hold some)."""
    if settings.train_cpus_per_worker is not None:
        return float(settings.train_cpus_per_worker)
    import ray

    free = float(ray.available_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
    return share_of_free_cpus(free, num_workers)


def run_name_for(settings: TrainSettings, name: str, resume: bool) -> str:
    """A fresh `<name>-<time>` run, or the last one (recorded beside the runs) to resume."""
    marker = settings.storage_dir / f"{name}.last_run"
    if resume and marker.exists():
        return marker.read_text().strip()
    run_name = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(run_name)
    return run_name


def training_lock(settings: TrainSettings, say: Say) -> FileLock:
    """The lock that keeps training runs on this machine one at a time (held while fitting)."""
    path = settings.data_dir.resolve() / "training.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=settings.train_lock_timeout_s)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say(f"another training run holds {path}; waiting up to {settings.train_lock_timeout_s:g} s")
        try:
            lock.acquire()
        except Timeout:
            raise TimeoutError(
                f"another training run held {path} for more than "
                f"{settings.train_lock_timeout_s:g} s (CRYPTOPRED_TRAIN_LOCK_TIMEOUT_S)"
            ) from None
    return lock


def train(
    settings: TrainSettings,
    request: TrainRequest,
    say: Say = print,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> TrainReport:
    """The whole job, one run at a time per machine; DataValidationError (before Ray starts)
    when the rows are unusable."""
    lock = training_lock(settings, say)
    try:
        return _train(settings, request, say, on_epoch)
    finally:
        lock.release()


def _train(
    settings: TrainSettings,
    request: TrainRequest,
    say: Say,
    on_epoch: Callable[[EpochReport], None] | None,
) -> TrainReport:
    started = time.perf_counter()
    pair = request.pair.strip().upper().replace("-", "/")
    config = settings.train_config(
        candle_seconds=request.candle_seconds, horizon_seconds=request.horizon_seconds
    )
    name = model_name(pair, request.candle_seconds)
    frame = read_indicator_frame(
        settings.db_url,
        pair,
        request.candle_seconds,
        since_ms=request.since_ms,
        until_ms=request.until_ms,
    )
    if frame.empty:
        raise DataValidationError("no rows", 0, f"final rows of {pair} {request.candle_seconds} s")
    data = prepare_data(frame, config)
    say(f"{name}: {len(frame):,} rows, {data.summary['n_windows']:,} windows validated")
    connect_ray(settings, log_to_driver=True, start_local=True, say=say)
    run_name = run_name_for(settings, name, request.resume)
    if request.trials == 1:
        return _fit_and_log(
            settings, request, name, pair, frame, data, config, run_name, say, on_epoch, started
        )
    from cryptopred_training.tune import start_parent_run

    parent_run_id = start_parent_run(settings.mlflow_uri, name, {"trigger": request.trigger})
    try:
        tuned = _search(settings, request, data, config, run_name, parent_run_id, say)
        best = apply_point(config, tuned.best.point)
        return _fit_and_log(
            settings,
            request,
            name,
            pair,
            frame,
            with_window(data, best.window_steps),
            best,
            run_name,
            say,
            on_epoch,
            started,
            tuned=tuned,
            parent_run_id=parent_run_id,
        )
    except BaseException:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=settings.mlflow_uri).set_terminated(parent_run_id, "FAILED")
        raise


def _search(
    settings: TrainSettings,
    request: TrainRequest,
    data: PreparedData,
    config: TrainConfig,
    run_name: str,
    parent_run_id: str,
    say: Say,
) -> TuneOutcome:
    """Ray Tune's trials of the space around `config`, logged nested under the parent run."""
    from cryptopred_training.tune import log_trials, run_tune

    concurrency = min(settings.train_tune_concurrency, request.trials)
    options = TuneOptions(
        trials=request.trials,
        storage_dir=Path(settings.storage_dir),
        run_name=f"{run_name}-tune",
        max_concurrent_trials=concurrency,
        cpus_per_trial=cpus_per_worker(settings, concurrency),
        use_gpu=request.use_gpu,
    )
    space = SearchSpace.around(config)
    say(
        f"Ray Tune: {options.trials} trials, {concurrency} at once, ASHA on validation loss; "
        f"sizes {', '.join(s.label for s in space.sizes)}, windows {space.window_steps}, "
        f"learning rate {space.learning_rate_min:.2g}-{space.learning_rate_max:.2g}"
    )
    tuned = run_tune(data, config, space, options)
    log_trials(settings.mlflow_uri, parent_run_id, tuned)
    for trial in tuned.trials:
        point = trial.point
        say(
            f"trial {trial.trial_id}: {point.size.label}, window {point.window_steps}, "
            f"learning rate {point.learning_rate:.3g}: best val loss {trial.best_val_loss:.4f} "
            f"in {len(trial.val_losses)} epoch(s){' [best]' if trial is tuned.best else ''}"
        )
    return tuned


def _fit_and_log(
    settings: TrainSettings,
    request: TrainRequest,
    name: str,
    pair: str,
    frame: pd.DataFrame,
    data: PreparedData,
    config: TrainConfig,
    run_name: str,
    say: Say,
    on_epoch: Callable[[EpochReport], None] | None,
    started: float,
    *,
    tuned: TuneOutcome | None = None,
    parent_run_id: str | None = None,
) -> TrainReport:
    """The Ray Train fit of `config`, the walk-forward folds (each a Ray Train fit too), the
    gate and the MLflow run (`parent_run_id`'s when given). `data` is `frame` prepared for
    `config`'s window; `started` is the job's perf_counter start."""
    split = chronological_split(
        data.ends, config.train_fraction, config.validation_fraction, max(data.steps)
    )
    normalizer = fit_normalizer(data, split.train)
    options = RayFitOptions(
        num_workers=request.num_workers,
        use_gpu=request.use_gpu,
        cpus_per_worker=cpus_per_worker(settings, request.num_workers),
        storage_dir=Path(settings.storage_dir),
        run_name=run_name,
        max_rss_mb=settings.train_max_rss_mb,
        nice=settings.train_nice,
    )
    from cryptopred_training.champion_scoring import champion_loss

    current = champion_loss(settings.mlflow_uri, name, frame, data, split.test, config)
    if current is not None:
        say(f"current champion's test {config.promotion_loss} loss: {current:.6g}")
    say(f"Ray Train: {options.num_workers} worker(s), run {options.run_name}")
    fit_seconds: list[float] = []
    fitter = ray_fitter(options, normalizer)

    def timed_fitter(*args: Any) -> Any:
        t0 = time.perf_counter()
        result = fitter(*args)
        fit_seconds.append(time.perf_counter() - t0)
        return result

    outcome = train_and_decide(
        data,
        config,
        champion_loss=current,
        on_epoch=on_epoch,
        fitter=timed_fitter,
        walk_forward_fitter=numbered_ray_fitter(options),
    )
    extra_params = _scaling_params(options, request)
    extra_metrics = {"ray_fit_seconds": fit_seconds[0]}
    if tuned is not None:
        extra_params |= tuned.params()
        extra_metrics |= tuned.metrics()
    logged = log_training(
        tracking_uri=settings.mlflow_uri,
        name=name,
        pair=pair,
        frame=frame,
        data=data,
        config=config,
        outcome=outcome,
        extra_params=extra_params,
        extra_metrics=extra_metrics,
        champion_loss=current,
        run_tags={"trigger": request.trigger},
        run_id=parent_run_id,
    )
    total_s = time.perf_counter() - started
    return TrainReport(name, outcome, logged, fit_seconds[0], total_s, tuned)


def _scaling_params(options: RayFitOptions, request: TrainRequest) -> dict[str, Any]:
    return {
        "num_workers": options.num_workers,
        "use_gpu": options.use_gpu,
        "cpus_per_worker": options.cpus_per_worker,
        "ray_run_name": options.run_name,
        "since_ms": request.since_ms,
        "until_ms": request.until_ms,
        "trigger": request.trigger,
    }
