"""The model the worker scores with, swapped whole between batches on reload."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from flights_app.metrics import Metric, StageMetrics
from ml.features import N_FEATURES
from ml.model import LoadedModel, ModelError, arrays_path, load, manifest_path

log = logging.getLogger("flights_app.model")


class ModelRegistry:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.current: LoadedModel | None = None
        self._loaded: tuple | None = None  # signature of the files behind `current`
        self._refused: tuple[tuple, str] | None = None  # the last refused signature, and why
        self.counts = StageMetrics([Metric("refusals", "flights_model_reloads_refused",
                                           "Model reloads refused (bad file or manifest)")])

    def load_initial(self) -> LoadedModel:
        """Load at start; a bad model stops the worker (ModelError says why)."""
        signature = self._signature()
        self._swap(load(self.path), signature)
        return self.current

    def _signature(self) -> tuple:
        """What identifies the files on disk now: the model's, its arrays' and the manifest's size and mtime."""
        out = []
        for path in (self.path, arrays_path(self.path), manifest_path(self.path)):
            try:
                st = path.stat()
                out.append((st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    def reload(self) -> tuple[bool, str]:
        """Load the files again if they changed. A bad file is refused (once, loudly); the current model stays."""
        signature = self._signature()
        if signature == self._loaded:
            return False, f"model {self.current.version} is already loaded"
        if self._refused is not None and self._refused[0] == signature:
            return False, self._refused[1]
        try:
            candidate = load(self.path)
        except ModelError as error:
            log.error("Model reload refused, keeping model %s: %s",
                      self.current.version if self.current else "none", error)
            self._refused = (signature, str(error))
            self.counts.inc("refusals")
            return False, str(error)
        self._swap(candidate, signature)
        return True, f"model {candidate.version} loaded"

    @property
    def refusing(self) -> bool:
        """True while the files on disk are the ones last refused (the worker scores with an older model)."""
        return self._refused is not None and self._refused[0] == self._signature()

    def _swap(self, model: LoadedModel, signature: tuple | None = None) -> None:
        model.score(np.zeros((1, N_FEATURES)))  # compile before the first real batch
        self.current = model
        self._loaded = signature
        log.info("Scoring with model %s (%s rows, %s)", model.version,
                 model.manifest.get("training_rows"), model.manifest.get("training_source"))
