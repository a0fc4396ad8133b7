"""EarlyStopping and the shared epoch loop `run_epochs`, with a plain and a checkpointing caller."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cryptopred_training.config import TrainConfig
from cryptopred_training.features import (
    Normalizer,
    WindowSource,
    compute_targets,
    valid_window_ends,
)
from cryptopred_training.models.transformer import CausalTransformer, TransformerSpec
from cryptopred_training.steps import (
    Batch,
    EarlyStopping,
    EpochReport,
    cpu_state,
    evaluate,
    make_optimizer,
    run_epochs,
)

# the skip and the calibrated widths: a linear layer and a registered buffer in the state
SPEC = TransformerSpec(
    n_features=4,
    n_horizons=3,
    window_steps=12,
    d_model=16,
    n_heads=4,
    autoregressive_feature=0,
    calibrated_intervals=True,
)
CONFIG = TrainConfig(window_steps=12, batch_size=32, max_epochs=4, patience=10, seed=3)


def sources() -> tuple[WindowSource, WindowSource]:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 4))
    targets = compute_targets(np.exp(np.cumsum(features[:, 0] / 100)), [1, 2, 3])
    normalizer = Normalizer.fit(features, targets)
    ends = valid_window_ends(features, targets, 12)
    return (
        WindowSource.build(features, targets, ends[:200], normalizer, 12),
        WindowSource.build(features, targets, ends[200:], normalizer, 12),
    )


def new_model() -> CausalTransformer:
    torch.manual_seed(0)
    return CausalTransformer(SPEC)


def shuffled(train: WindowSource, config: TrainConfig) -> Callable[[int], Iterable[Batch]]:
    return lambda epoch: train.batches(config.batch_size, shuffle_seed=config.seed * 1000 + epoch)


def scripted(losses: list[float]) -> Callable[[], dict[str, float]]:
    """Validation metrics whose losses are `losses`, one per call."""
    remaining: Iterator[float] = iter(losses)
    return lambda: {"loss": next(remaining), "mae": 0.0, "coverage": 0.0}


def copied(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def without_timing(reports: list[EpochReport]) -> list[tuple[int, float, dict[str, float], bool]]:
    return [(r.epoch, r.train_loss, r.validation, r.is_best) for r in reports]


def test_early_stopping_keeps_the_lowest_loss_and_stops_patience_epochs_past_it() -> None:
    model = new_model()
    stopping = EarlyStopping.starting_from(model, patience=2)
    assert (stopping.next_epoch, stopping.stopped, stopping.best_epoch) == (0, False, -1)
    assert_same_state(stopping.best_state, model.state_dict())
    assert "interval_widening" in stopping.best_state
    assert "autoregressive.weight" in stopping.best_state

    assert stopping.observe(0, 2.0, model)
    with torch.no_grad():
        model.interval_widening.add_(1.0)  # type: ignore[union-attr]
        model.autoregressive.weight.add_(1.0)  # type: ignore[union-attr]
    at_epoch_1 = copied(model)
    assert stopping.observe(1, 1.5, model)
    assert not stopping.observe(2, 1.5, model)  # equal is not better
    assert not stopping.observe(3, float("nan"), model)
    assert (stopping.best_epoch, stopping.best_loss, stopping.next_epoch) == (1, 1.5, 4)
    assert stopping.stopped  # epoch 3 is 2 past the best
    # a copy: later changes to the model leave it alone
    with torch.no_grad():
        model.interval_widening.add_(1.0)  # type: ignore[union-attr]
    assert_same_state(stopping.best_state, at_epoch_1)


def test_early_stopping_round_trips_through_a_checkpoint_file(tmp_path: Path) -> None:
    model = new_model()
    stopping = EarlyStopping.starting_from(model, patience=3)
    for epoch, loss in enumerate([3.0, 1.0, 2.0]):
        stopping.observe(epoch, loss, model)
    torch.save(stopping.to_checkpoint(), tmp_path / "state.pt")
    restored = EarlyStopping.from_checkpoint(
        torch.load(tmp_path / "state.pt", weights_only=True), patience=3
    )
    assert (restored.best_epoch, restored.best_loss, restored.next_epoch) == (1, 1.0, 3)
    assert not restored.stopped
    assert_same_state(restored.best_state, stopping.best_state)
    # the patience is the resumed run's own
    assert EarlyStopping.from_checkpoint(stopping.to_checkpoint(), patience=1).stopped


def test_cpu_state_unwraps_a_module_wrapper_like_ddp() -> None:
    class Wrapper(nn.Module):
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

    model = new_model()
    assert_same_state(cpu_state(Wrapper(model)), model.state_dict())


def test_the_plain_loop_stops_early_and_reports_each_epoch() -> None:
    train, _ = sources()
    model = new_model()
    config = replace(CONFIG, max_epochs=10, patience=2)
    stopping = EarlyStopping.starting_from(model, config.patience)
    reports: list[EpochReport] = []
    states: list[dict[str, torch.Tensor]] = []

    def on_epoch(report: EpochReport) -> None:
        reports.append(report)
        states.append(copied(model))

    history = run_epochs(
        model,
        make_optimizer(model, config),
        config,
        stopping,
        shuffled(train, config),
        scripted([3.0, 2.0, 2.5, 2.4, 1.0]),
        on_epoch,
    )
    assert history == reports
    assert [r.epoch for r in history] == [0, 1, 2, 3]  # epoch 3 is 2 past the best
    assert [r.is_best for r in history] == [True, True, False, False]
    assert stopping.best_epoch == 1
    assert_same_state(stopping.best_state, states[1])
    assert all(r.train_loss > 0 and r.samples_per_second > 0 for r in history)
    # a second run over the same stopping has nothing left to do
    assert (
        run_epochs(model, make_optimizer(model, config), config, stopping, lambda _: [], dict) == []
    )


def test_a_checkpointing_caller_resumes_to_the_same_weights_and_reports(tmp_path: Path) -> None:
    train, validation = sources()

    def run(config: TrainConfig, resume: bool) -> tuple[nn.Module, list[EpochReport]]:
        """A fit that saves a checkpoint after every epoch and, with `resume`, starts from it."""
        model = new_model()
        optimizer = make_optimizer(model, config)
        stopping = EarlyStopping.starting_from(model, config.patience)
        if resume:
            state = torch.load(tmp_path / "state.pt", weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            stopping = EarlyStopping.from_checkpoint(state, config.patience)

        def checkpoint(report: EpochReport) -> None:
            state = {"model": cpu_state(model), "optimizer": optimizer.state_dict()}
            torch.save({**state, **stopping.to_checkpoint()}, tmp_path / "state.pt")

        reports = run_epochs(
            model,
            optimizer,
            config,
            stopping,
            shuffled(train, config),
            lambda: evaluate(model, validation.batches(4 * config.batch_size), config.quantiles),
            checkpoint,
        )
        model.load_state_dict(stopping.best_state)
        return model, reports

    whole, whole_reports = run(CONFIG, resume=False)
    _, first = run(replace(CONFIG, max_epochs=2), resume=False)
    resumed, rest = run(CONFIG, resume=True)
    assert [r.epoch for r in first + rest] == [0, 1, 2, 3]
    assert without_timing(first + rest) == without_timing(whole_reports)
    assert_same_state(resumed.state_dict(), whole.state_dict())


@pytest.mark.parametrize("workers", [1, 3])
def test_samples_per_second_counts_every_workers_equal_shard(workers: int) -> None:
    train, _ = sources()
    model = new_model()
    stopping = EarlyStopping.starting_from(model, CONFIG.patience)
    config = replace(CONFIG, max_epochs=1)
    (report,) = run_epochs(
        model,
        make_optimizer(model, config),
        config,
        stopping,
        shuffled(train, config),
        scripted([1.0]),
        workers=workers,
    )
    assert report.samples_per_second * report.seconds == pytest.approx(len(train) * workers)
