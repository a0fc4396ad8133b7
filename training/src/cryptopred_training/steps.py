"""Train/eval steps, the one epoch loop with early stopping, and the single-process fit.

`run_epochs` is the loop of every fit: `fit` runs it in one process (the local fitter, Ray Tune
trials, benchmarks) and the Ray Train worker in `ray_fit` runs it over its shard, with a
checkpoint after every epoch and `EarlyStopping` restored from the last one on resume.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cryptopred_training.config import DEFAULT_QUANTILES, TrainConfig
from cryptopred_training.features import WindowSource

Batch = Mapping[str, torch.Tensor]


def pinball_loss(
    predicted: torch.Tensor, target: torch.Tensor, quantiles: Sequence[float] = DEFAULT_QUANTILES
) -> torch.Tensor:
    """Mean pinball loss of predicted (batch, H, Q) quantiles against target (batch, H)."""
    q = torch.tensor(quantiles, dtype=predicted.dtype, device=predicted.device)
    error = target.unsqueeze(-1) - predicted
    return torch.maximum(q * error, (q - 1) * error).mean()


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    grad_clip: float | None = 1.0,
) -> float:
    """One optimiser step on batch {"x": (B, L, F), "y": (B, H)}; returns the loss."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = pinball_loss(model(batch["x"]), batch["y"], quantiles)
    loss.backward()  # type: ignore[no-untyped-call]
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def eval_step(
    model: nn.Module, batch: Batch, quantiles: Sequence[float] = DEFAULT_QUANTILES
) -> dict[str, float]:
    """Loss, median absolute error and interval coverage on one batch (scaled targets)."""
    model.eval()
    predicted = model(batch["x"])
    y = batch["y"]
    inside = (y >= predicted[..., 0]) & (y <= predicted[..., -1])
    return {
        "loss": float(pinball_loss(predicted, y, quantiles)),
        "mae": float((predicted[..., 1] - y).abs().mean()),
        "coverage": float(inside.float().mean()),
        "n": float(len(y)),
    }


def evaluate(
    model: nn.Module, batches: Iterable[Batch], quantiles: Sequence[float] = DEFAULT_QUANTILES
) -> dict[str, float]:
    """eval_step over many batches, weighted by batch size."""
    totals: dict[str, float] = {}
    n_total = 0.0
    for batch in batches:
        metrics = eval_step(model, batch, quantiles)
        n = metrics.pop("n")
        n_total += n
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value * n
    return {key: value / max(n_total, 1.0) for key, value in totals.items()}


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did; passed to the `on_epoch` callback."""

    epoch: int
    train_loss: float
    validation: dict[str, float]
    seconds: float
    samples_per_second: float
    is_best: bool


@dataclass
class FitResult:
    """The epochs run and the best epoch, whose weights the model holds after `fit`."""

    history: list[EpochReport] = field(default_factory=list)
    best_epoch: int = -1
    best_validation_loss: float = float("inf")
    seconds: float = 0.0


def _moved(batches: Iterable[Batch], device: torch.device | None) -> Iterable[Batch]:
    if device is None:
        return batches
    return ({key: value.to(device) for key, value in batch.items()} for batch in batches)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the full state_dict (parameters and buffers) of `model`, or of the module
    a wrapper such as DistributedDataParallel holds."""
    inner = getattr(model, "module", None)
    plain = inner if isinstance(inner, nn.Module) else model
    return {key: value.detach().cpu().clone() for key, value in plain.state_dict().items()}


@dataclass
class EarlyStopping:
    """The best epoch so far, its validation loss and weights, and when to stop: after an
    epoch `patience` or more epochs past the best. Saved in and restored from checkpoints."""

    patience: int
    best_state: dict[str, torch.Tensor]
    best_epoch: int = -1
    best_loss: float = float("inf")
    last_epoch: int = -1

    @classmethod
    def starting_from(cls, model: nn.Module, patience: int) -> EarlyStopping:
        """Before the first epoch; the weights of `model` count as best until an epoch beats
        an infinite loss."""
        return cls(patience=patience, best_state=cpu_state(model))

    @classmethod
    def from_checkpoint(cls, state: Mapping[str, Any], patience: int) -> EarlyStopping:
        """As `to_checkpoint` left it after the checkpoint's epoch."""
        return cls(
            patience=patience,
            best_state=state["best_model"],
            best_epoch=int(state["best_epoch"]),
            best_loss=float(state["best_loss"]),
            last_epoch=int(state["epoch"]),
        )

    def to_checkpoint(self) -> dict[str, Any]:
        """The checkpoint entries `from_checkpoint` reads."""
        return {
            "best_model": self.best_state,
            "epoch": self.last_epoch,
            "best_epoch": self.best_epoch,
            "best_loss": self.best_loss,
        }

    def observe(self, epoch: int, validation_loss: float, model: nn.Module) -> bool:
        """Record `epoch`; True (and a copy of the weights of `model`) when its loss is the
        lowest yet."""
        self.last_epoch = epoch
        if not validation_loss < self.best_loss:
            return False
        self.best_epoch, self.best_loss = epoch, validation_loss
        self.best_state = cpu_state(model)
        return True

    @property
    def next_epoch(self) -> int:
        return self.last_epoch + 1

    @property
    def stopped(self) -> bool:
        """Whether the last epoch observed was `patience` or more epochs past the best."""
        return self.last_epoch >= 0 and self.last_epoch - self.best_epoch >= self.patience


def run_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    stopping: EarlyStopping,
    batches_of_epoch: Callable[[int], Iterable[Batch]],
    evaluate_model: Callable[[], dict[str, float]],
    on_epoch: Callable[[EpochReport], None] | None = None,
    workers: int = 1,
) -> list[EpochReport]:
    """Epochs from `stopping.next_epoch` until `config.max_epochs` or early stopping.

    Each epoch runs `train_step` over `batches_of_epoch(epoch)` (already on the model's device),
    then `evaluate_model()` (its time counts in the epoch's), lets `stopping` observe the
    validation loss, and calls `on_epoch` with the report. With `workers` > 1 every worker
    trains an equal shard, so the epoch's samples are this worker's times `workers`.
    """
    reports: list[EpochReport] = []
    for epoch in range(stopping.next_epoch, config.max_epochs):
        if stopping.stopped:
            break
        started = time.perf_counter()
        loss_sum, samples = 0.0, 0
        for batch in batches_of_epoch(epoch):
            loss = train_step(model, optimizer, batch, config.quantiles, config.grad_clip)
            loss_sum += loss * len(batch["y"])
            samples += len(batch["y"])
        metrics = evaluate_model()
        seconds = time.perf_counter() - started
        report = EpochReport(
            epoch=epoch,
            train_loss=loss_sum / max(samples, 1),
            validation=metrics,
            seconds=seconds,
            samples_per_second=samples * workers / max(seconds, 1e-9),
            is_best=stopping.observe(epoch, metrics["loss"], model),
        )
        reports.append(report)
        if on_epoch is not None:
            on_epoch(report)
    return reports


def fit(
    model: nn.Module,
    train: WindowSource,
    validation: WindowSource,
    config: TrainConfig,
    on_epoch: Callable[[EpochReport], None] | None = None,
    device: torch.device | None = None,
) -> FitResult:
    """Train with early stopping on validation loss; leave the best weights in `model`.
    With `device` the model and every batch are moved there (the model stays there)."""
    started = time.perf_counter()
    if device is not None:
        model.to(device)
    optimizer = make_optimizer(model, config)
    stopping = EarlyStopping.starting_from(model, config.patience)
    history = run_epochs(
        model,
        optimizer,
        config,
        stopping,
        lambda epoch: _moved(
            train.batches(config.batch_size, shuffle_seed=config.seed * 1000 + epoch), device
        ),
        lambda: evaluate(
            model, _moved(validation.batches(config.batch_size * 4), device), config.quantiles
        ),
        on_epoch,
    )
    model.load_state_dict(stopping.best_state)
    return FitResult(
        history=history,
        best_epoch=stopping.best_epoch,
        best_validation_loss=stopping.best_loss,
        seconds=time.perf_counter() - started,
    )
