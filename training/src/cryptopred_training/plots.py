"""PNG plots written into a given folder (matplotlib Figure API: Agg, no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from cryptopred_training.steps import EpochReport


def plot_predictions(
    folder: Path,
    window_end_ms: npt.NDArray[np.int64],
    base_close: npt.NDArray[np.float64],
    actual_returns: npt.NDArray[np.float64],
    predicted_returns: npt.NDArray[np.float64],
    horizon_seconds: Sequence[int],
    *,
    max_points: int = 500,
) -> list[Path]:
    """One PNG per horizon: actual vs predicted close with the 80% band, at the target time."""
    folder.mkdir(parents=True, exist_ok=True)
    keep = slice(max(0, len(window_end_ms) - max_points), None)
    paths = []
    for j, seconds in enumerate(horizon_seconds):
        target_min = (window_end_ms[keep] + seconds * 1000 - window_end_ms[0]) / 60_000
        base = base_close[keep]
        fig = Figure(figsize=(10, 4))
        ax = fig.subplots()
        ax.plot(target_min, base * np.exp(actual_returns[keep, j]), label="actual", lw=1)
        ax.plot(target_min, base * np.exp(predicted_returns[keep, j, 1]), label="median", lw=1)
        ax.fill_between(
            target_min,
            base * np.exp(predicted_returns[keep, j, 0]),
            base * np.exp(predicted_returns[keep, j, 2]),
            alpha=0.3,
            label="80% interval",
        )
        ax.set_xlabel("minutes since first window end")
        ax.set_ylabel("close")
        ax.set_title(f"predicted vs actual close, horizon {seconds} s")
        ax.legend()
        path = folder / f"predicted_vs_actual_{seconds}s.png"
        fig.savefig(path, dpi=80)
        paths.append(path)
    return paths


def plot_loss_curves(folder: Path, history: Sequence[EpochReport]) -> Path:
    """Train and validation pinball loss per epoch."""
    folder.mkdir(parents=True, exist_ok=True)
    epochs = [r.epoch for r in history]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(epochs, [r.train_loss for r in history], marker="o", label="train")
    ax.plot(epochs, [r.validation["loss"] for r in history], marker="o", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("pinball loss")
    ax.legend()
    path = folder / "loss_curves.png"
    fig.savefig(path, dpi=80)
    return path


def quantile_hits(
    actual: npt.NDArray[np.float64], predicted: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """(H, L) share of outcomes at or below each predicted quantile, per horizon: a calibrated
    forecaster's shares equal the quantile levels."""
    below = actual[:, :, None] <= predicted
    shares: npt.NDArray[np.float64] = below.mean(axis=0)
    return shares


def pit_bins(
    actual: npt.NDArray[np.float64], predicted: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """(H, L + 1) share of outcomes in each bin the predicted quantiles cut: the histogram of
    the probability integral transform at the quantile levels."""
    below = (actual[:, :, None] <= predicted).mean(axis=0)
    edges = np.concatenate([np.zeros((below.shape[0], 1)), below, np.ones((below.shape[0], 1))], 1)
    bins: npt.NDArray[np.float64] = np.diff(edges, axis=1)
    return bins


def plot_calibration(
    folder: Path,
    actual: npt.NDArray[np.float64],
    predicted: dict[str, npt.NDArray[np.float64]],
    levels: Sequence[float],
    horizon_seconds: Sequence[int],
) -> list[Path]:
    """`reliability.png` (observed share below each quantile against its level, per model and
    horizon) and `pit_histogram.png` (the transformer's outcomes per quantile bin against the
    bins' widths)."""
    folder.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(4 * len(horizon_seconds), 4))
    axes = np.atleast_1d(fig.subplots(1, len(horizon_seconds)))
    for j, (ax, seconds) in enumerate(zip(axes, horizon_seconds, strict=True)):
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
        for name, values in predicted.items():
            ax.plot(levels, quantile_hits(actual, values)[j], marker="o", label=name)
        ax.set_xlabel("quantile level")
        ax.set_ylabel("share of outcomes below")
        ax.set_title(f"reliability, {seconds} s")
    axes[0].legend(fontsize="small")
    reliability = folder / "reliability.png"
    fig.savefig(reliability, dpi=80)

    fig = Figure(figsize=(4 * len(horizon_seconds), 4))
    axes = np.atleast_1d(fig.subplots(1, len(horizon_seconds)))
    expected = np.diff(np.concatenate([[0.0], np.asarray(levels), [1.0]]))
    bins = pit_bins(actual, predicted["transformer"])
    x = np.arange(len(expected))
    for j, (ax, seconds) in enumerate(zip(axes, horizon_seconds, strict=True)):
        ax.bar(x - 0.2, bins[j], width=0.4, label="observed")
        ax.bar(x + 0.2, expected, width=0.4, label="calibrated")
        ax.set_xticks(x, [f"bin {k + 1}" for k in x])
        ax.set_title(f"PIT at the quantiles, transformer, {seconds} s")
    axes[0].legend(fontsize="small")
    pit = folder / "pit_histogram.png"
    fig.savefig(pit, dpi=80)
    return [reliability, pit]


def plot_skill(
    folder: Path,
    metrics: dict[str, float],
    baselines: Sequence[str],
    horizon_seconds: Sequence[int],
) -> Path:
    """`skill_by_horizon.png`: the transformer's pinball skill against each baseline per
    horizon, from its `skill_vs_<baseline>_<h>s` metrics."""
    folder.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    x = np.arange(len(horizon_seconds))
    width = 0.8 / max(1, len(baselines))
    for k, baseline in enumerate(baselines):
        values = [metrics.get(f"skill_vs_{baseline}_{s}s", np.nan) for s in horizon_seconds]
        ax.bar(x + k * width - 0.4 + width / 2, values, width=width, label=baseline)
    ax.axhline(0.0, color="grey", lw=1)
    ax.set_xticks(x, [f"{s} s" for s in horizon_seconds])
    ax.set_ylabel("skill (1 - pinball / baseline's)")
    ax.legend(fontsize="small")
    path = folder / "skill_by_horizon.png"
    fig.savefig(path, dpi=80)
    return path
