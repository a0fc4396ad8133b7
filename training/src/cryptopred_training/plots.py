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
