"""Pure train/eval steps and a plain single-process fit loop with early stopping.

A Ray Train `train_loop_per_worker` calls `train_step` and `eval_step` on its own batches;
`fit` is the same loop in one process, reused by the walk-forward backtest and benchmarks.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

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
    result = FitResult()
    best_state = copy.deepcopy(model.state_dict())
    for epoch in range(config.max_epochs):
        epoch_start = time.perf_counter()
        losses: list[float] = []
        weights: list[int] = []
        shuffled = train.batches(config.batch_size, shuffle_seed=config.seed * 1000 + epoch)
        for batch in _moved(shuffled, device):
            losses.append(train_step(model, optimizer, batch, config.quantiles, config.grad_clip))
            weights.append(len(batch["y"]))
        train_loss = sum(a * b for a, b in zip(losses, weights, strict=True)) / max(sum(weights), 1)
        metrics = evaluate(
            model, _moved(validation.batches(config.batch_size * 4), device), config.quantiles
        )
        seconds = time.perf_counter() - epoch_start
        is_best = metrics["loss"] < result.best_validation_loss
        if is_best:
            result.best_epoch = epoch
            result.best_validation_loss = metrics["loss"]
            best_state = copy.deepcopy(model.state_dict())
        report = EpochReport(
            epoch=epoch,
            train_loss=train_loss,
            validation=metrics,
            seconds=seconds,
            samples_per_second=len(train) / max(seconds, 1e-9),
            is_best=is_best,
        )
        result.history.append(report)
        if on_epoch is not None:
            on_epoch(report)
        if epoch - result.best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - started
    return result
