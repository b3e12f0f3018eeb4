"""The model the worker scores with, swapped whole between batches on reload."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ml.features import N_FEATURES
from ml.model import LoadedModel, ModelError, load, read_manifest

log = logging.getLogger("flights_app.model")


class ModelRegistry:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.current: LoadedModel | None = None
        self._loaded_sha: str | None = None

    def load_initial(self) -> LoadedModel:
        """Load at start; a bad model stops the worker (ModelError says why)."""
        self._swap(load(self.path))
        return self.current

    def reload(self) -> tuple[bool, str]:
        """Load the file again if it changed. A bad file is refused; the current model stays."""
        try:
            manifest = read_manifest(self.path)
            if manifest.get("sha256") == self._loaded_sha:
                return False, f"model {self.current.version} is already loaded"
            candidate = load(self.path)
        except ModelError as error:
            log.error("Model reload refused, keeping model %s: %s",
                      self.current.version if self.current else "none", error)
            return False, str(error)
        self._swap(candidate)
        return True, f"model {candidate.version} loaded"

    def _swap(self, model: LoadedModel) -> None:
        model.scorer.anomaly_score(np.zeros((1, N_FEATURES)))  # compile before the first real batch
        self.current = model
        self._loaded_sha = model.manifest["sha256"]
        log.info("Scoring with model %s (%s rows, %s)", model.version,
                 model.manifest.get("training_rows"), model.manifest.get("training_source"))
