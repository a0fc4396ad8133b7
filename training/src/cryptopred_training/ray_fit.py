"""Ray Train: a TorchTrainer fit of the transformer with the `fit` signature of `flow`.

`train_loop_per_worker` runs `steps.run_epochs` with this worker's shard of the train windows
and all validation windows (so every worker takes the same early-stopping decision), reports
every epoch, and rank 0 writes a checkpoint folder (weights, early-stopping state, optimiser,
normaliser, history) from which a restarted run with the same name resumes.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from cryptopred_training.config import TrainConfig
from cryptopred_training.features import Normalizer, WindowSource
from cryptopred_training.models.transformer import CausalTransformer, TransformerSpec
from cryptopred_training.steps import (
    Batch,
    EarlyStopping,
    EpochReport,
    FitResult,
    cpu_state,
    evaluate,
    make_optimizer,
    run_epochs,
)

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
NORMALIZER_FILE = "normalizer.json"
HISTORY_FILE = "history.json"


@dataclass(frozen=True)
class RayFitOptions:
    """How to run the TorchTrainer: workers, devices, storage and the run's name."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    storage_dir: Path = Path(".data/ray_results")
    run_name: str = "cryptopred-train"
    max_rss_mb: int | None = None  # a worker above this resident memory fails the run
    nice: int = 0  # lower the workers' CPU priority by this much


def check_memory(max_rss_mb: int | None) -> None:
    """MemoryError naming the limit when this process's resident memory is above it."""
    if max_rss_mb is None:
        return
    import psutil

    rss_mb = psutil.Process().memory_info().rss / 2**20
    if rss_mb > max_rss_mb:
        raise MemoryError(
            f"a Ray Train worker uses {rss_mb:,.0f} MiB, above the {max_rss_mb} MiB limit "
            "(CRYPTOPRED_TRAIN_MAX_RSS_MB)"
        )


def _report_from_dict(data: dict[str, Any]) -> EpochReport:
    return EpochReport(**data)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker; the last checkpoint holds the best weights and the history."""
    import ray.train
    import ray.train.torch

    config = TrainConfig(**loop_config["config"])
    train: WindowSource = loop_config["train"]
    validation: WindowSource = loop_config["validation"]
    torch.set_num_threads(int(loop_config["threads"]))
    if loop_config.get("nice"):
        os.nice(int(loop_config["nice"]))  # this worker process ends with the run
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(config.seed)
    model = CausalTransformer(TransformerSpec(**loop_config["spec"]))
    model.load_state_dict(loop_config["initial_state"])
    history: list[dict[str, Any]] = []
    stopping = EarlyStopping.starting_from(model, config.patience)
    optimizer_state = None
    resumed = ray.train.get_checkpoint()
    if resumed is not None:
        with resumed.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, weights_only=True)
            history = json.loads((Path(folder) / HISTORY_FILE).read_text())
        model.load_state_dict(state["model"])
        optimizer_state = state["optimizer"]
        stopping = EarlyStopping.from_checkpoint(state, config.patience)
    model = ray.train.torch.prepare_model(model)  # type: ignore[assignment]
    optimizer = make_optimizer(model, config)  # after the move, so its state is on the device
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    device = ray.train.torch.get_device()
    # equal shards: every DDP worker must run the same number of steps
    shard = train.ends[rank::world][: len(train.ends) // world]
    own = WindowSource(train.features, train.scaled_targets, shard, train.window_steps)

    def batches_of_epoch(epoch: int) -> Iterator[Batch]:
        for batch in own.batches(config.batch_size, shuffle_seed=config.seed * 1000 + epoch):
            yield {k: v.to(device) for k, v in batch.items()}

    def evaluate_all() -> dict[str, float]:
        check_memory(loop_config.get("max_rss_mb"))
        batches = validation.batches(4 * config.batch_size)
        return evaluate(
            model, ({k: v.to(device) for k, v in b.items()} for b in batches), config.quantiles
        )

    def report_epoch(report: EpochReport) -> None:
        history.append(asdict(report))
        metrics = {
            "epoch": report.epoch,
            "train_loss": report.train_loss,
            "val_loss": report.validation["loss"],
            "val_mae": report.validation["mae"],
            "val_coverage": report.validation["coverage"],
            "samples_per_second": report.samples_per_second,
            "is_best": report.is_best,
        }
        if rank != 0:
            ray.train.report(metrics)
            return
        print(_epoch_line(report), flush=True)
        with tempfile.TemporaryDirectory() as folder:
            _write_checkpoint(
                Path(folder), model, optimizer, stopping, history, loop_config["normalizer"]
            )
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))

    run_epochs(
        model,
        optimizer,
        config,
        stopping,
        batches_of_epoch,
        evaluate_all,
        report_epoch,
        workers=world,
    )


def _write_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    stopping: EarlyStopping,
    history: list[dict[str, Any]],
    normalizer: dict[str, Any],
) -> None:
    state = {
        "model": cpu_state(model),
        "optimizer": optimizer.state_dict(),
        **stopping.to_checkpoint(),
    }
    torch.save(state, folder / STATE_FILE)
    (folder / NORMALIZER_FILE).write_text(json.dumps(normalizer))
    (folder / HISTORY_FILE).write_text(json.dumps(history))


def _epoch_line(report: EpochReport) -> str:
    return (
        f"epoch {report.epoch}: train loss {report.train_loss:.4f}, "
        f"validation loss {report.validation['loss']:.4f}, mae {report.validation['mae']:.4f}, "
        f"{report.samples_per_second:,.0f} samples/s{' *' if report.is_best else ''}"
    )


def fit_keeping_sigint(trainer: Any) -> Any:
    """`trainer.fit()`, with this process's SIGINT handler put back afterwards.

    Ray Train installs a handler of its own for the run (Ctrl-C aborts the run, then exits the
    process with status 0) and leaves it installed, holding the finished run's controller
    actor. Restored here, a long-lived driver (the demo) stops on Ctrl-C again and the
    controller can exit; an aborted run surfaces as KeyboardInterrupt, not as an exit with 0.
    """
    previous = signal.getsignal(signal.SIGINT)
    try:
        return trainer.fit()
    except SystemExit:  # only Ray Train's SIGINT handler exits during a fit
        pass
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)
    # Reached only after that exit. Raised out here, not in the except clause, so that the
    # SystemExit's frames (holding the controller's handle) do not live on as its context.
    raise KeyboardInterrupt("the training run was aborted by Ctrl-C")


def ray_fitter(
    options: RayFitOptions, normalizer: Normalizer | None = None
) -> Callable[..., FitResult]:
    """A `flow.Fitter` that trains with a TorchTrainer and leaves the best weights in place."""

    def fit_with_ray(
        model: CausalTransformer,
        train: WindowSource,
        validation: WindowSource,
        config: TrainConfig,
        on_epoch: Callable[[EpochReport], None] | None = None,
    ) -> FitResult:
        from ray.train import CheckpointConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        started = time.perf_counter()
        options.storage_dir.mkdir(parents=True, exist_ok=True)
        loop_config = {
            "config": asdict(config),
            "spec": model.spec.to_dict(),
            "initial_state": model.state_dict(),
            "train": train,
            "validation": validation,
            "threads": max(1, int(options.cpus_per_worker)),
            "max_rss_mb": options.max_rss_mb,
            "nice": options.nice,
            "normalizer": normalizer.to_dict() if normalizer is not None else {},
        }
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config=loop_config,
            scaling_config=ScalingConfig(
                num_workers=options.num_workers,
                use_gpu=options.use_gpu,
                resources_per_worker={"CPU": options.cpus_per_worker},
            ),
            run_config=RunConfig(
                name=options.run_name,
                storage_path=str(options.storage_dir),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
            ),
        )
        result = fit_keeping_sigint(trainer)
        if result.error is not None:
            raise result.error
        if result.checkpoint is None:
            raise RuntimeError(f"Ray Train run {options.run_name} left no checkpoint")
        with result.checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, weights_only=True)
            history = json.loads((Path(folder) / HISTORY_FILE).read_text())
        model.load_state_dict(state["best_model"])
        fit_result = FitResult(seconds=time.perf_counter() - started)
        for data in history:
            report = _report_from_dict(data)
            fit_result.history.append(report)
            if on_epoch is not None:
                on_epoch(report)
        fit_result.best_epoch = int(state["best_epoch"])
        if fit_result.history:
            fit_result.best_validation_loss = min(r.validation["loss"] for r in fit_result.history)
        log.info("Ray Train run %s stored under %s", options.run_name, result.path)
        return fit_result

    return fit_with_ray


def numbered_ray_fitter(options: RayFitOptions, label: str = "fold") -> Callable[..., FitResult]:
    """A `flow.Fitter` whose n-th fit (from 1) is a TorchTrainer run named
    `<run_name>-<label><n>` with the same workers, devices and storage: the walk-forward
    folds' fits, each resumable under its own name."""
    count = itertools.count(1)

    def fit_next(
        model: CausalTransformer,
        train: WindowSource,
        validation: WindowSource,
        config: TrainConfig,
        on_epoch: Callable[[EpochReport], None] | None = None,
    ) -> FitResult:
        named = replace(options, run_name=f"{options.run_name}-{label}{next(count)}")
        return ray_fitter(named)(model, train, validation, config, on_epoch)

    return fit_next
