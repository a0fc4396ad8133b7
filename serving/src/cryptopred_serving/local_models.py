"""The champions' predictors held in the API replica itself, for on-demand predictions.

A 16-row forecast of the served transformer costs about 1.3 ms of CPU; a Ray Serve handle call
to the model server around it costs about 7 ms more, split between the two replicas. So the API
predicts in its own process (in a worker thread), keeping the version each served series'
champion points at; the streaming publisher goes on calling the multiplexed `ModelServer`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cryptopred_serving.champion_watch import Champion

Loader = Callable[[Champion], Any]
_thread = threading.local()


def one_torch_thread() -> None:
    """`torch.set_num_threads(1)` for the calling thread, once. OpenMP keeps that setting per
    thread: the replica's own call does not reach its worker threads, where each prediction
    then starts a two-thread team whose idle thread spins (2 instead of 3.3 ms of CPU per
    16-row prediction arriving every 10 ms, measured on the 2-core machine)."""
    if not getattr(_thread, "one_torch_thread", False):
        import torch

        torch.set_num_threads(1)
        _thread.one_torch_thread = True


def load_from_mlflow(tracking_uri: str) -> Loader:
    """A loader of model version `<name>/<version>` as its `PricePredictor`, from the version's
    model card and state file only (`cryptopred_training.registry`; no pyfunc, no unpickling).
    A version that is not a cryptopred model of a known format raises `UnknownModelFormatError`,
    which the callers treat as any failed load: the champion stays the version loaded before."""

    def load(champion: Champion) -> Any:
        from cryptopred_training.registry import load_registered_predictor

        return load_registered_predictor(tracking_uri, champion.name, champion.version)

    return load


class LocalModels:
    """Predictors by model id, loaded once each; loading a model's new version drops its
    older ones (requests still running on them keep their reference)."""

    def __init__(self, loader: Loader, thread_setup: Callable[[], None] = lambda: None) -> None:
        self._loader = loader
        self._thread_setup = thread_setup  # run in the predicting thread first
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, champion: Champion) -> Any | None:
        """The loaded predictor of `champion`, or None (cheap: for the event loop)."""
        return self._models.get(champion.model_id)

    def load(self, champion: Champion) -> Any:
        """The predictor of `champion`, loaded first when needed (blocking). A loaded one is
        returned without the lock, so predictions never wait for another version's load."""
        model = self._models.get(champion.model_id)
        if model is not None:
            return model
        with self._lock:
            model = self._models.get(champion.model_id)
            if model is None:
                model = self._loader(champion)
                self._models = {
                    model_id: kept
                    for model_id, kept in self._models.items()
                    if model_id.rsplit("/", 1)[0] != champion.name
                } | {champion.model_id: model}
            return model

    def predict(self, champion: Champion, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every horizon's forecast on `rows` (blocking: call from a worker thread)."""
        self._thread_setup()
        return list(self.load(champion).predict_records(rows))

    def loaded(self) -> list[str]:
        return sorted(self._models)
