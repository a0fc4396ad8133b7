import numpy as np

from cryptopred_training.plots import plot_loss_curves, plot_predictions
from cryptopred_training.steps import EpochReport

PNG = b"\x89PNG\r\n\x1a\n"


def test_plots_write_png_files(tmp_path):
    n = 50
    ends = 1_700_000_040_000 + 60_000 * np.arange(n, dtype=np.int64)
    base = 100.0 + np.arange(n, dtype=float)
    actual = np.random.default_rng(0).normal(0, 0.01, (n, 2))
    predicted = np.stack([actual - 0.01, actual, actual + 0.01], axis=2)
    paths = plot_predictions(tmp_path / "plots", ends, base, actual, predicted, [60, 300])
    assert [p.name for p in paths] == [
        "predicted_vs_actual_60s.png",
        "predicted_vs_actual_300s.png",
    ]
    history = [
        EpochReport(i, 1.0 / (i + 1), {"loss": 1.2 / (i + 1)}, 1.0, 100.0, True) for i in range(3)
    ]
    loss_path = plot_loss_curves(tmp_path / "plots", history)
    for path in [*paths, loss_path]:
        assert path.read_bytes().startswith(PNG) and path.stat().st_size > 1000
