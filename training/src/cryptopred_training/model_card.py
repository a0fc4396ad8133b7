"""The model card: a small JSON file logged beside the predictor's state file.

A logged model is data: the card names its format, the state file's path inside the model and
its sha256, and the predictor's shape. Two formats exist: the transformer's (`cryptopred.price-
predictor`, a weights-only torch state) and a volatility baseline's (`cryptopred.baseline-
predictor`, a JSON state); both load as a `Forecaster`. Serving and the champion check load a
registered version only through `read_card` and `load_state`, never by unpickling: a version
without a card, of an unknown format, whose state file does not hash to the card's value or is
not a weights-only state is refused with `UnknownModelFormatError`. Nothing here imports
mlflow.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cryptopred_training.baseline_predictor import BaselinePredictor
from cryptopred_training.predictor import PricePredictor

FORMAT_NAME = "cryptopred.price-predictor"
BASELINE_FORMAT_NAME = "cryptopred.baseline-predictor"
FORMAT_VERSION = 1
KNOWN_FORMAT_VERSIONS = frozenset({FORMAT_VERSION})
KNOWN_FORMATS = (FORMAT_NAME, BASELINE_FORMAT_NAME)
MAX_BASELINE_STATE_BYTES = 1 << 20

#: a registered model that serving can load: the transformer or a volatility baseline
Forecaster = PricePredictor | BaselinePredictor
CARD_FILE = "cryptopred-model.json"
#: the pyfunc artifact name of the card; MLflow puts artifacts under `artifacts/` of the model
CARD_ARTIFACT = "model_card"
ARTIFACTS_DIR = "artifacts"
CARD_PATH = f"{ARTIFACTS_DIR}/{CARD_FILE}"
MAX_CARD_BYTES = 1 << 20


class UnknownModelFormatError(Exception):
    """A registered version that is not a cryptopred model of a known format."""

    def __init__(self, model: str, problem: str) -> None:
        super().__init__(f"model {model} is not a cryptopred model of a known format: {problem}")
        self.model = model
        self.problem = problem


@dataclass(frozen=True)
class ModelCard:
    """The card's fields (the format name and version are checked when reading)."""

    predictor_path: str
    predictor_sha256: str
    window_steps: int
    horizon_seconds: tuple[int, ...]
    candle_seconds: int
    feature_columns: tuple[str, ...]
    format: str = FORMAT_NAME

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "format_version": FORMAT_VERSION,
            "horizon_seconds": list(self.horizon_seconds),
            "feature_columns": list(self.feature_columns),
        }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_for(predictor: Forecaster, state_path: Path) -> ModelCard:
    """The card of `predictor`, saved at `state_path`, once logged as an artifact."""
    return ModelCard(
        predictor_path=f"{ARTIFACTS_DIR}/{state_path.name}",
        predictor_sha256=sha256_of(state_path),
        window_steps=predictor.window_steps,
        horizon_seconds=predictor.horizon_seconds,
        candle_seconds=predictor.candle_seconds,
        feature_columns=predictor.feature_columns,
        format=BASELINE_FORMAT_NAME if isinstance(predictor, BaselinePredictor) else FORMAT_NAME,
    )


def write_card(predictor: Forecaster, state_path: Path, folder: Path) -> Path:
    """Write the card of the state file `state_path` as `folder/cryptopred-model.json`."""
    path = folder / CARD_FILE
    path.write_text(json.dumps(card_for(predictor, state_path).to_dict(), indent=2))
    return path


def _field(raw: dict[str, Any], key: str, kind: type, model: str) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UnknownModelFormatError(
            model, f"model card field {key!r} is missing or not {kind.__name__}"
        )
    return value


def _int_list(raw: dict[str, Any], key: str, model: str) -> tuple[int, ...]:
    values = _field(raw, key, list, model)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise UnknownModelFormatError(model, f"model card field {key!r} is not a list of integers")
    return tuple(values)


def _relative_path(value: str, model: str) -> str:
    """A plain path inside the model folder (no absolute path, no `..`)."""
    path = PurePosixPath(value)
    if path.is_absolute() or not path.parts or ".." in path.parts or "\\" in value:
        raise UnknownModelFormatError(
            model, f"model card predictor_path {value!r} leaves the model"
        )
    return path.as_posix()


def parse_card(text: str, model: str) -> ModelCard:
    """The card in `text`, checked: a known format and version, every field of the right type."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise UnknownModelFormatError(model, f"model card is not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise UnknownModelFormatError(model, "model card is not a JSON object")
    if raw.get("format") not in KNOWN_FORMATS:
        raise UnknownModelFormatError(model, f"unknown format {raw.get('format')!r}")
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UnknownModelFormatError(model, f"unknown format version {version!r}")
    if version not in KNOWN_FORMAT_VERSIONS:
        raise UnknownModelFormatError(model, f"unknown format version {version}")
    columns = _field(raw, "feature_columns", list, model)
    if not all(isinstance(c, str) for c in columns):
        raise UnknownModelFormatError(
            model, "model card field 'feature_columns' is not a list of names"
        )
    return ModelCard(
        predictor_path=_relative_path(_field(raw, "predictor_path", str, model), model),
        predictor_sha256=_field(raw, "predictor_sha256", str, model).lower(),
        window_steps=_field(raw, "window_steps", int, model),
        horizon_seconds=_int_list(raw, "horizon_seconds", model),
        candle_seconds=_field(raw, "candle_seconds", int, model),
        feature_columns=tuple(columns),
        format=raw["format"],
    )


def read_card(path: Path, model: str) -> ModelCard:
    """The card file at `path` (downloaded from the model), checked by `parse_card`."""
    if not path.is_file():
        raise UnknownModelFormatError(model, f"no model card ({CARD_PATH})")
    if path.stat().st_size > MAX_CARD_BYTES:
        raise UnknownModelFormatError(model, f"model card is larger than {MAX_CARD_BYTES} bytes")
    return parse_card(path.read_text(encoding="utf-8", errors="replace"), model)


def _load_baseline(card: ModelCard, state_path: Path, model: str) -> BaselinePredictor:
    if state_path.stat().st_size > MAX_BASELINE_STATE_BYTES:
        raise UnknownModelFormatError(model, f"{card.predictor_path} is too large for a baseline")
    try:
        return BaselinePredictor.load(state_path)
    except (KeyError, TypeError, ValueError) as exc:
        raise UnknownModelFormatError(
            model, f"{card.predictor_path} is not a baseline state ({exc!r})"
        ) from None


def _load_transformer(card: ModelCard, state_path: Path, model: str) -> PricePredictor:
    try:
        return PricePredictor.load(state_path)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise UnknownModelFormatError(
            model, f"{card.predictor_path} is not a weights-only state ({exc})"
        ) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise UnknownModelFormatError(
            model, f"{card.predictor_path} is not a predictor state ({exc!r})"
        ) from None


def load_state(card: ModelCard, state_path: Path, model: str) -> Forecaster:
    """The forecaster in `state_path` if it hashes to the card's sha256, loads as the card's
    format (a weights-only state or a JSON baseline) and has the card's shape."""
    if not state_path.is_file():
        raise UnknownModelFormatError(model, f"no state file {card.predictor_path}")
    actual = sha256_of(state_path)
    if actual != card.predictor_sha256:
        raise UnknownModelFormatError(
            model,
            f"sha256 of {card.predictor_path} is {actual}, the card says {card.predictor_sha256}",
        )
    predictor: Forecaster
    if card.format == BASELINE_FORMAT_NAME:
        predictor = _load_baseline(card, state_path, model)
    else:
        predictor = _load_transformer(card, state_path, model)
    shape = {
        "window_steps": (predictor.window_steps, card.window_steps),
        "horizon_seconds": (predictor.horizon_seconds, card.horizon_seconds),
        "candle_seconds": (predictor.candle_seconds, card.candle_seconds),
        "feature_columns": (predictor.feature_columns, card.feature_columns),
    }
    for key, (state_value, card_value) in shape.items():
        if state_value != card_value:
            raise UnknownModelFormatError(
                model, f"{key} of the state ({state_value}) differs from the card ({card_value})"
            )
    return predictor


def load_model_dir(folder: Path, model: str) -> Forecaster:
    """The predictor of a model folder on disk (card at `artifacts/cryptopred-model.json`)."""
    card = read_card(folder / CARD_PATH, model)
    return load_state(card, folder / card.predictor_path, model)
