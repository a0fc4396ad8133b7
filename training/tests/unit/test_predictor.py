import numpy as np
import pytest

from cryptopred_training.features import FEATURE_COLUMNS, Normalizer
from cryptopred_training.models.transformer import TransformerSpec, build_transformer
from cryptopred_training.predictor import OUTPUT_COLUMNS, PricePredictor
from cryptopred_training.synthetic import synthetic_indicator_frame


@pytest.fixture(scope="module")
def predictor():
    spec = TransformerSpec(
        n_features=len(FEATURE_COLUMNS), n_horizons=3, window_steps=20, d_model=16, n_heads=2
    )
    n = len(FEATURE_COLUMNS)
    normalizer = Normalizer(mean=[0.0] * n, std=[1.0] * n, target_scale=[0.001, 0.002, 0.004])
    return PricePredictor(
        spec=spec,
        state_dict=build_transformer(spec, seed=0).state_dict(),
        normalizer=normalizer,
        horizon_seconds=[60, 300, 900],
        candle_seconds=60,
    )


@pytest.fixture(scope="module")
def frame():
    return synthetic_indicator_frame(200, seed=4)


def test_too_few_rows_names_the_required_length(predictor, frame):
    with pytest.raises(ValueError, match="need at least 20 indicator rows"):
        predictor.predict(frame.tail(19))


def test_predicts_every_horizon_in_price_space(predictor, frame):
    out = predictor.predict(frame.tail(20))
    assert tuple(out.columns) == OUTPUT_COLUMNS
    assert out["horizon_seconds"].tolist() == [60, 300, 900]
    close = frame["close"].iloc[-1]
    np.testing.assert_allclose(out["predicted_close"], close * np.exp(out["predicted_return"]))
    assert (out["lower"] <= out["predicted_close"]).all()
    assert (out["predicted_close"] <= out["upper"]).all()
    end_ms = frame["window_end_ms"].iloc[-1]
    assert (out["target_ts_ms"] - end_ms).tolist() == [60_000, 300_000, 900_000]
    # only the last window counts, in any row order
    shuffled = frame.sample(frac=1.0, random_state=0)
    np.testing.assert_allclose(predictor.predict(shuffled)["upper"], out["upper"])


def test_save_and_load_round_trip(predictor, frame, tmp_path):
    path = predictor.save(tmp_path / "model.pt")
    loaded = PricePredictor.load(path)
    assert loaded.window_steps == 20 and loaded.feature_columns == FEATURE_COLUMNS
    assert loaded.normalizer == predictor.normalizer
    np.testing.assert_array_equal(
        loaded.predict(frame)["predicted_return"], predictor.predict(frame)["predicted_return"]
    )


def test_records_give_the_same_forecasts_as_the_frame(predictor, frame):
    window = frame.tail(30).copy()
    window.loc[window.index[-3], "rsi_7"] = np.nan  # a missing indicator: None in a record
    records = window.sample(frac=1.0, random_state=2).to_dict("records")
    for record in records:
        record["rsi_7"] = None if record["rsi_7"] != record["rsi_7"] else record["rsi_7"]
    assert any(record["rsi_7"] is None for record in records)
    expected = predictor.predict(window)
    got = predictor.predict_records(records)
    assert [list(r) for r in got] == [list(OUTPUT_COLUMNS)] * 3
    for column in OUTPUT_COLUMNS:
        assert [r[column] for r in got] == expected[column].tolist(), column
    assert all(type(r["horizon_seconds"]) is int and type(r["upper"]) is float for r in got)


def test_records_too_few_rows_names_the_required_length(predictor, frame):
    with pytest.raises(ValueError, match="need at least 20 indicator rows"):
        predictor.predict_records(frame.tail(19).to_dict("records"))


def test_served_forecasts_equal_trainings_when_opens_differ_from_previous_closes(predictor):
    """Real candles open away from the previous close (gaps, the first trade's price): the
    window's first `ret_1` must come from the previous row's close, as in training."""
    import torch

    from cryptopred_training.features import compute_features

    frame = synthetic_indicator_frame(120, seed=9)
    rng = np.random.default_rng(1)
    frame["open"] = frame["close"].shift(1) * np.exp(rng.normal(0, 0.002, len(frame)))
    frame.loc[frame.index[0], "open"] = frame["close"].iloc[0]
    steps = predictor.window_steps
    features = compute_features(frame).to_numpy(dtype=np.float64)  # as training computes them
    for end in (60, 119):
        window = features[end - steps + 1 : end + 1]
        x = torch.from_numpy(predictor.normalizer.transform(window)).unsqueeze(0)
        with torch.no_grad():
            trained = predictor.model(x)[0].numpy()[:, 1] * predictor.normalizer.target_scale
        records = frame.iloc[: end + 1].to_dict("records")
        served = [f["predicted_return"] for f in predictor.predict_records(records)]
        assert np.allclose(served, trained, rtol=1e-9, atol=0)
        from_frame = predictor.predict(frame.iloc[: end + 1])["predicted_return"].to_numpy()
        assert np.allclose(from_frame, trained, rtol=1e-9, atol=0)
    # with the window's rows only, the first ret_1 is log(close/open): not training's numbers
    only_window = frame.iloc[119 - steps + 1 : 120].to_dict("records")
    assert not np.allclose(
        [f["predicted_return"] for f in predictor.predict_records(only_window)],
        trained,
        rtol=1e-9,
        atol=0,
    )
