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


def test_calibration_shares_and_plots(tmp_path):
    import numpy as np
    import pytest

    from cryptopred_training.plots import pit_bins, plot_calibration, plot_skill, quantile_hits

    rng = np.random.default_rng(0)
    actual = rng.normal(0, 1, (20_000, 1))
    calibrated = np.tile([-1.2816, 0.0, 1.2816], (20_000, 1))[:, None, :]
    narrow = calibrated / 4
    assert quantile_hits(actual, calibrated)[0] == pytest.approx([0.1, 0.5, 0.9], abs=0.01)
    assert pit_bins(actual, calibrated)[0] == pytest.approx([0.1, 0.4, 0.4, 0.1], abs=0.01)
    assert pit_bins(actual, narrow)[0][0] > 0.35  # too narrow: the outer bins fill up
    paths = plot_calibration(
        tmp_path, actual, {"transformer": narrow, "garch": calibrated}, (0.1, 0.5, 0.9), [60]
    )
    skill = plot_skill(tmp_path, {"skill_vs_garch_60s": -0.3}, ["garch"], [60])
    for path in [*paths, skill]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
