import pytest

from cryptopred_training.config import TrainConfig


def test_defaults_and_params():
    config = TrainConfig()
    assert config.horizon_seconds == (60, 300, 900)
    assert config.window_steps == 60 and config.quantiles == (0.1, 0.5, 0.9)
    params = config.to_params()
    assert params["horizon_seconds"] == "(60, 300, 900)" and params["batch_size"] == "256"
    assert all(isinstance(v, str) for v in params.values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"horizon_seconds": ()}, "horizon_seconds"),
        ({"quantiles": (0.5, 0.1, 0.9)}, "quantiles"),
        ({"train_fraction": 0.9, "validation_fraction": 0.1}, "test split"),
        ({"d_model": 30, "n_heads": 4}, "divisible"),
    ],
)
def test_bad_values_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)
