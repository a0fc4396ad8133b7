"""The model card: a logged model's state file is loaded only when its card vouches for it."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch

from cryptopred_training.features import FEATURE_COLUMNS, Normalizer
from cryptopred_training.model_card import (
    CARD_PATH,
    FORMAT_NAME,
    FORMAT_VERSION,
    UnknownModelFormatError,
    load_model_dir,
    write_card,
)
from cryptopred_training.models.transformer import CausalTransformer, TransformerSpec
from cryptopred_training.predictor import PricePredictor
from cryptopred_training.synthetic import synthetic_indicator_frame

MODEL = "BTC-USD-60s/3"


def small_predictor() -> PricePredictor:
    torch.manual_seed(0)
    n = len(FEATURE_COLUMNS)
    spec = TransformerSpec(n_features=n, n_horizons=2, window_steps=8, d_model=8, d_ff=16)
    return PricePredictor(
        spec=spec,
        state_dict=CausalTransformer(spec).state_dict(),
        normalizer=Normalizer(mean=[0.0] * n, std=[1.0] * n, target_scale=[0.01, 0.02]),
        horizon_seconds=(60, 300),
        candle_seconds=60,
    )


class Marker:
    """Unpickling it writes a file: the code a pickled model could run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.path, "unpickled"))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model folder laid out as MLflow logs it: the state file and the card in artifacts/."""
    folder = tmp_path / "model"
    (folder / "artifacts").mkdir(parents=True)
    predictor = small_predictor()
    state = predictor.save(folder / "artifacts" / "predictor.pt")
    write_card(predictor, state, folder / "artifacts")
    return folder


def _card(folder: Path) -> dict:
    return json.loads((folder / CARD_PATH).read_text())


def _rewrite(folder: Path, **changes: object) -> None:
    (folder / CARD_PATH).write_text(json.dumps({**_card(folder), **changes}))


def test_a_good_card_loads_the_predictor_it_describes(model_dir: Path) -> None:
    card = _card(model_dir)
    assert card["format"] == FORMAT_NAME and card["format_version"] == FORMAT_VERSION
    assert card["predictor_path"] == "artifacts/predictor.pt"
    state = (model_dir / "artifacts" / "predictor.pt").read_bytes()
    assert card["predictor_sha256"] == hashlib.sha256(state).hexdigest()
    assert card["window_steps"] == 8 and card["horizon_seconds"] == [60, 300]
    assert card["candle_seconds"] == 60 and card["feature_columns"] == list(FEATURE_COLUMNS)

    loaded = load_model_dir(model_dir, MODEL)
    rows = synthetic_indicator_frame(20, seed=1).to_dict("records")
    assert loaded.predict_records(rows) == small_predictor().predict_records(rows)


def test_a_model_without_a_card_is_refused(model_dir: Path) -> None:
    (model_dir / CARD_PATH).unlink()
    (model_dir / "python_model.pkl").write_bytes(pickle.dumps(Marker(model_dir / "marker")))
    with pytest.raises(UnknownModelFormatError, match=f"{MODEL} .*no model card") as err:
        load_model_dir(model_dir, MODEL)
    assert err.value.model == MODEL
    assert not (model_dir / "marker").exists()


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"format": "sklearn.pickle"}, "unknown format 'sklearn.pickle'"),
        ({"format_version": 99}, "unknown format version 99"),
        ({"format_version": "1"}, "unknown format version '1'"),
        ({"predictor_path": "../outside.pt"}, "predictor_path"),
        ({"predictor_path": "/etc/passwd"}, "predictor_path"),
        ({"predictor_sha256": "0" * 64}, "sha256"),
        ({"window_steps": 60}, "window_steps"),
        ({"horizon_seconds": [60]}, "horizon_seconds"),
    ],
)
def test_a_card_that_does_not_fit_is_refused(
    model_dir: Path, changes: dict[str, object], words: str
) -> None:
    _rewrite(model_dir, **changes)
    with pytest.raises(UnknownModelFormatError, match=MODEL) as err:
        load_model_dir(model_dir, MODEL)
    assert words in str(err.value)


def test_a_card_that_is_not_json_is_refused(model_dir: Path) -> None:
    (model_dir / CARD_PATH).write_text("{not json")
    with pytest.raises(UnknownModelFormatError, match="model card is not"):
        load_model_dir(model_dir, MODEL)


def test_a_changed_state_file_fails_the_hash_check(model_dir: Path) -> None:
    state = model_dir / "artifacts" / "predictor.pt"
    state.write_bytes(state.read_bytes() + b"\0")
    with pytest.raises(UnknownModelFormatError, match=r"sha256 of artifacts/predictor\.pt"):
        load_model_dir(model_dir, MODEL)


def test_a_pickled_state_is_refused_without_running_it(model_dir: Path) -> None:
    """Even with a matching hash, a state file that needs unpickling code is not loaded."""
    marker = model_dir / "marker"
    state = model_dir / "artifacts" / "predictor.pt"
    torch.save({"spec": Marker(marker)}, state)
    _rewrite(model_dir, predictor_sha256=hashlib.sha256(state.read_bytes()).hexdigest())
    with pytest.raises(UnknownModelFormatError, match="not a weights-only state"):
        load_model_dir(model_dir, MODEL)
    assert not marker.exists()
