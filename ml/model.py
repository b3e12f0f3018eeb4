"""Training, saving and verified loading of the anomaly model.

A model is two files side by side: ``NAME.joblib`` (the fitted pipeline) and
``NAME.json`` (its manifest: sha256 of the joblib file, scikit-learn version,
features, training rows, parameters, creation time, evaluation figures).
``joblib.load`` can run code, so ``load_model`` checks the manifest and the
file's sha256 before it loads anything.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ml.compiled import CompiledForest
from ml.features import FEATURE_WORDS, FEATURES

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default.joblib"
DEFAULT_PARAMS = {"n_estimators": 200, "contamination": 0.01, "max_samples": "auto", "random_state": 42}


class ModelError(RuntimeError):
    """A model file cannot be used; the message says why and what to do."""


def train(X: np.ndarray, **params) -> Pipeline:
    settings = {**DEFAULT_PARAMS, **params}
    pipeline = Pipeline([
        ("scale", StandardScaler()),
        ("forest", IsolationForest(n_jobs=1, **settings)),
    ])
    pipeline.fit(np.asarray(X, dtype=np.float64))
    return pipeline


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(model_path: Path) -> Path:
    return Path(model_path).with_suffix(".json")


def save(pipeline: Pipeline, path: Path, *, training_rows: int, source: str, params: dict,
         evaluation: dict | None = None) -> dict:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".joblib.tmp")
    joblib.dump(pipeline, tmp, compress=3)
    digest = sha256_of(tmp)
    manifest = {
        "version": digest[:12],
        "sha256": digest,
        "file": path.name,
        "sklearn_version": sklearn.__version__,
        "features": list(FEATURES),
        "training_rows": training_rows,
        "training_source": source,
        "params": {**DEFAULT_PARAMS, **params},
        "threshold": float(-pipeline.steps[-1][1].offset_),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "evaluation": evaluation or {},
    }
    # Manifest first, then the model: a reader that sees the new model always finds its manifest.
    manifest_tmp = manifest_path(path).with_suffix(".json.tmp")
    manifest_tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    manifest_tmp.replace(manifest_path(path))
    tmp.replace(path)
    return manifest


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


@dataclass(frozen=True)
class LoadedModel:
    pipeline: Pipeline
    manifest: dict
    scorer: CompiledForest
    path: Path

    @property
    def version(self) -> str:
        return self.manifest["version"]


def read_manifest(path: Path) -> dict:
    mpath = manifest_path(path)
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise ModelError(f"{mpath} is missing: a model is only loaded with its manifest") from None
    except ValueError as error:
        raise ModelError(f"{mpath} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), str):
        raise ModelError(f"{mpath} has no sha256")
    return manifest


def load(path: Path = DEFAULT_MODEL) -> LoadedModel:
    """Verify, then load. Refuses a file whose sha256, features or scikit-learn version do not match."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no model at {path}: train one with `flights-app train` (see the README)")
    manifest = read_manifest(path)
    actual = sha256_of(path)
    if actual != manifest["sha256"]:
        raise ModelError(
            f"{path} does not match its manifest (sha256 {actual[:12]}..., manifest says "
            f"{manifest['sha256'][:12]}...): refusing to load a file that may have been tampered with"
        )
    if manifest.get("features") != list(FEATURES):
        raise ModelError(f"{path} was trained on other features ({manifest.get('features')}); retrain it")
    trained_with = str(manifest.get("sklearn_version", "?"))
    if _minor(trained_with) != _minor(sklearn.__version__):
        raise ModelError(
            f"{path} was trained with scikit-learn {trained_with}, this is {sklearn.__version__}: "
            "retrain it with `make model` or install the matching scikit-learn"
        )
    pipeline = joblib.load(path)
    if not isinstance(pipeline, Pipeline):
        raise ModelError(f"{path} holds a {type(pipeline).__name__}, not a Pipeline")
    return LoadedModel(pipeline, manifest, CompiledForest(pipeline), path)


def explain(scorer: CompiledForest, features: np.ndarray) -> str:
    """The feature furthest from what the model saw in training, in words.

    The distance is in standard deviations of the training data (the scaler's
    own statistics): the simplest account of why a point is easy to isolate.
    """
    z = (np.asarray(features, dtype=np.float64) - scorer.mean) / scorer.scale
    i = int(np.argmax(np.abs(z)))
    name = FEATURES[i]
    words, unit = FEATURE_WORDS[name]
    direction = "far above" if z[i] > 0 else "far below"
    low, high = scorer.mean[i] - 2 * scorer.scale[i], scorer.mean[i] + 2 * scorer.scale[i]
    value = features[i]
    unit_text = f" {unit}" if unit else ""
    return f"{words} {value:.4g}{unit_text} {direction} typical ({low:.4g}..{high:.4g}{unit_text}, {abs(z[i]):.1f} sd)"
