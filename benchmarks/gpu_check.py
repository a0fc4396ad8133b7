"""GPU check of the training step: the transformer, `train_step` and `evaluate` on CUDA, the way
the Ray Train loop runs them (model moved first, optimizer after, batches moved per step, best
weights copied to the CPU), against the same run on the CPU.

Needs only torch, numpy and pandas (runs on a bare GPU machine with PYTHONPATH=training/src):
    PYTHONPATH=training/src python benchmarks/gpu_check.py [--rows 40000] [--epochs 3]
Prints per device: samples/s, losses per epoch, and the CPU-vs-GPU difference of the final
validation metrics when the GPU-trained weights are evaluated on the CPU. Exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from cryptopred_training.config import TrainConfig
from cryptopred_training.features import WindowSource
from cryptopred_training.models.transformer import TransformerSpec, build_transformer
from cryptopred_training.steps import evaluate, make_optimizer, train_step


def planted_data(rows: int, n_features: int, horizons: int, seed: int) -> tuple[np.ndarray, ...]:
    """Features with an AR signal whose next values are the targets (so a model can learn)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, n_features)).astype(np.float32)
    for t in range(1, rows):
        x[t, 0] += 0.7 * x[t - 1, 0]
    y = np.stack([np.roll(x[:, 0], -h) * 0.7**h for h in range(1, horizons + 1)], axis=1)
    y += rng.normal(scale=0.3, size=y.shape).astype(np.float32)
    return x, y.astype(np.float32)


def run(
    device: torch.device,
    source: WindowSource,
    val: WindowSource,
    spec: TransformerSpec,
    config: TrainConfig,
) -> tuple[dict[str, torch.Tensor], list[float], float]:
    model = build_transformer(spec, config.seed).to(device)
    optimizer = make_optimizer(model, config)  # after the move, as in ray_fit

    def score() -> float:
        batches = ({k: v.to(device) for k, v in b.items()} for b in val.batches(1024))
        return evaluate(model, batches, config.quantiles)["loss"]

    losses, samples, started = [score()], 0, time.perf_counter()  # untrained first
    for epoch in range(config.max_epochs):
        for batch in source.batches(config.batch_size, shuffle_seed=epoch):
            moved = {k: v.to(device) for k, v in batch.items()}
            train_step(model, optimizer, moved, config.quantiles, config.grad_clip)
            samples += len(batch["y"])
        losses.append(score())
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = samples / (time.perf_counter() - started)
    best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return best, losses, rate


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--d-model", type=int, default=64)
    args = parser.parse_args()
    config = TrainConfig(max_epochs=args.epochs, batch_size=256, d_model=args.d_model)
    x, y = planted_data(args.rows, 16, len(config.horizon_seconds), seed=0)
    steps = config.window_steps
    ends = np.arange(steps - 1, args.rows - len(config.horizon_seconds) - 1)
    cut = int(len(ends) * 0.8)
    train = WindowSource(x, y, ends[:cut], steps)
    val = WindowSource(x, y, ends[cut:], steps)
    spec = TransformerSpec(
        n_features=16,
        n_horizons=len(config.horizon_seconds),
        window_steps=steps,
        d_model=config.d_model,
        n_heads=config.n_heads,
        n_layers=config.n_layers,
        d_ff=2 * config.d_model,
    )
    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
        print(f"gpu: {torch.cuda.get_device_name(0)}")
    failures = []
    results = {}
    for device in devices:
        state, losses, rate = run(device, train, val, spec, config)
        results[device.type] = (state, losses, rate)
        print(
            f"{device.type}: {rate:,.0f} samples/s, validation loss untrained, then per epoch "
            + ", ".join(f"{loss:.4f}" for loss in losses)
        )
        if not losses[-1] < losses[0] * 0.9:
            failures.append(f"{device.type}: validation loss did not fall ({losses})")
    if "cuda" in results:
        # the GPU-trained weights, copied to the CPU, must score the same there
        cpu_model = build_transformer(spec, config.seed)
        cpu_model.load_state_dict(results["cuda"][0])
        on_cpu = evaluate(cpu_model, val.batches(1024), config.quantiles)
        gpu_last = results["cuda"][1][-1]
        print(f"gpu weights on cpu: loss {on_cpu['loss']:.5f} vs {gpu_last:.5f} on gpu")
        if abs(on_cpu["loss"] - gpu_last) > 1e-3 * max(1.0, abs(gpu_last)):
            failures.append("gpu weights score differently on the cpu")
        print(f"gpu/cpu speed-up: {results['cuda'][2] / results['cpu'][2]:.1f}x")
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
