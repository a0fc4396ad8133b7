"""Forecast-honesty benchmark: how often the gate promotes noise, and how close a learned model
gets to the oracle where there is a signal.

Run: .venv/bin/python benchmarks/bench_forecast.py [--seeds 20] [--rows 2500]
No services: the Ray-free training flow (`flow.run_training`) with the default gate.

1. False promotions: `--seeds` random walks (no signal); prints how many runs promoted the
   transformer (goal: at most 5 %) and which baseline served otherwise.
2. Planted signal: r_t = c * r_{t-15} + noise; prints, per horizon, the test split's MSE of
   the median log return relative to persistence's for the transformer and for the oracle
   (which knows c and the lag; goal: within 0.005 of it), the 80 % coverage (goal 80 +- 2 %)
   and the gate's decision.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time
from dataclasses import replace

import numpy as np

from cryptopred_training.config import TrainConfig
from cryptopred_training.features import compute_targets
from cryptopred_training.flow import predict_returns, prepare_data, run_training
from cryptopred_training.synthetic import synthetic_indicator_frame, synthetic_returns

CONFIG = TrainConfig(
    horizon_seconds=(60, 300),
    window_steps=24,
    batch_size=64,
    max_epochs=10,
    patience=3,
    walk_forward_folds=2,
    walk_forward_min_train_fraction=0.6,
    baseline_history_steps=240,
)
LAG = 15


def false_promotions(seeds: int, rows: int) -> None:
    promoted = 0
    served: collections.Counter[str] = collections.Counter()
    p_values = []
    started = time.perf_counter()
    for seed in range(seeds):
        frame = synthetic_indicator_frame(rows, seed=1000 + seed)
        outcome = run_training(frame, CONFIG)
        promoted += outcome.decision.promote
        served[
            outcome.decision.served if outcome.decision.promote else outcome.baseline_predictor.kind
        ] += 1
        p_values.append(outcome.gate[0].p_value)
    print(
        f"false promotions: {promoted} of {seeds} random walks ({promoted / seeds:.1%}; "
        f"goal <= 5 %); served: {dict(served)}; "
        f"median test DM p {statistics.median(p_values):.3f}; "
        f"{time.perf_counter() - started:.0f} s"
    )


def oracle_returns(returns: np.ndarray, coef: float, steps: tuple[int, ...]) -> np.ndarray:
    """(n, H) the oracle's expected h-step log return at each row: the sum of c * r_{t+k-LAG}
    for k = 1..h (every term is known at t when h <= LAG)."""
    n = returns.shape[0]
    out = np.zeros((n, len(steps)))
    for j, h in enumerate(steps):
        for k in range(1, h + 1):
            lagged = np.zeros(n)
            shift = LAG - k  # r_{t+k-LAG} = returns[t - shift]
            lagged[shift:] = returns[: n - shift] if shift else returns
            out[:, j] += coef * lagged
    return out


def planted_signal(rows: int, coef: float, seed: int, epochs: int) -> None:
    frame = synthetic_indicator_frame(rows, ar_lag=LAG, ar_coef=coef, seed=seed)
    returns = synthetic_returns(rows, volatility=0.001, ar_lag=LAG, ar_coef=coef, seed=seed)
    config = replace(CONFIG, max_epochs=epochs, patience=4)
    started = time.perf_counter()
    outcome = run_training(frame, config)
    data = prepare_data(frame, config)
    test = outcome.split.test
    actual = compute_targets(data.close, data.steps)[test]
    predicted = predict_returns(outcome.models, data, test, CONFIG)["transformer"]
    oracle = oracle_returns(returns, coef, data.steps)[test]
    for j, seconds in enumerate(CONFIG.horizon_seconds):
        zero = float(np.mean(actual[:, j] ** 2))
        model_ratio = float(np.mean((actual[:, j] - predicted[:, j, 1]) ** 2)) / zero
        oracle_ratio = float(np.mean((actual[:, j] - oracle[:, j]) ** 2)) / zero
        inside = (actual[:, j] >= predicted[:, j, 0]) & (actual[:, j] <= predicted[:, j, 2])
        print(
            f"planted c={coef:g} {seconds:>4} s: MSE / persistence transformer {model_ratio:.4f}"
            f", oracle {oracle_ratio:.4f} (gap {model_ratio - oracle_ratio:+.4f}; goal <= 0.005)"
            f"; 80 % coverage {inside.mean():.1%} (goal 78-82 %)"
        )
    print(
        f"planted c={coef:g} ({rows} rows, {epochs} epochs at most, "
        f"{time.perf_counter() - started:.0f} s): {outcome.decision.decision}, "
        f"{outcome.decision.reason}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2500, help="rows per random walk")
    parser.add_argument("--planted-rows", type=int, default=50_000)
    parser.add_argument("--planted-epochs", type=int, default=20)
    parser.add_argument("--skip-false-promotions", action="store_true")
    args = parser.parse_args()
    if not args.skip_false_promotions:
        false_promotions(args.seeds, args.rows)
    for coef in (0.7, 0.3):
        planted_signal(args.planted_rows, coef, seed=1, epochs=args.planted_epochs)


if __name__ == "__main__":
    main()
