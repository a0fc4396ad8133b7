"""Registered model versions loaded as data: the model card and the state file, nothing else.

`load_registered_predictor` downloads `artifacts/cryptopred-model.json` of a version, checks it
(`model_card.read_card`), downloads the one state file the card names and loads it weights-only
(`model_card.load_state`). It never calls `mlflow.pyfunc.load_model`, so no code stored in the
registry runs; a version that is not a cryptopred model of a known format raises
`UnknownModelFormatError` naming `<name>/<version>`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from cryptopred_training.model_card import (
    CARD_PATH,
    Forecaster,
    UnknownModelFormatError,
    load_state,
    read_card,
)


def _client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _download(repo: Any, path: str, folder: Path, model: str) -> Path:
    """`path` of the model, downloaded into `folder`; UnknownModelFormatError when it is absent."""
    parent = str(PurePosixPath(path).parent)
    listed = {
        info.path.rsplit("/", 1)[-1]
        for info in repo.list_artifacts(None if parent == "." else parent)
    }
    if PurePosixPath(path).name not in listed:
        problem = f"no model card ({CARD_PATH})" if path == CARD_PATH else f"no file {path}"
        raise UnknownModelFormatError(model, problem)
    folder.mkdir()
    return Path(repo.download_artifacts(path, dst_path=str(folder)))


def load_registered_predictor(tracking_uri: str, name: str, version: str) -> Forecaster:
    """The forecaster (transformer or baseline) of model version `name`/`version`, checked
    against its card."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    model = f"{name}/{version}"
    root = _client(tracking_uri).get_model_version_download_uri(name, version)
    repo = get_artifact_repository(root, tracking_uri=tracking_uri, registry_uri=tracking_uri)
    with tempfile.TemporaryDirectory(prefix="cryptopred-model-") as folder:
        card = read_card(_download(repo, CARD_PATH, Path(folder) / "card", model), model)
        state = _download(repo, card.predictor_path, Path(folder) / "state", model)
        return load_state(card, state, model)


def alias_version(tracking_uri: str, name: str, alias: str) -> str | None:
    """The version `name@alias` points at, or None when the model or the alias is missing."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(tracking_uri).get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None
