"""Training, calibrating, saving and verified loading of the anomaly model.

A model is three files side by side: ``NAME.joblib`` (the fitted scikit-learn pipeline),
``NAME.npz`` (the same model as the compiled scorer's plain arrays) and ``NAME.json``
(its manifest: sha256 of both files, scikit-learn version, features, the residuals'
typical sizes, the thresholds and the false-alarm budget they were set from, training
rows, parameters, creation time, evaluation figures). ``load`` checks the manifest and
both files' sha256 before it reads anything, then reads only the arrays (``np.load``
without pickle: no code runs, and the worker never imports scikit-learn). The pipeline
is loaded (``joblib.load``, which can run code) only when asked for, by training and
evaluation tools, and only from a verified file of the scikit-learn version it was made with.

The forest is trained on clean traffic (no data fault, nothing injected) plus a small
uniform reference sample over the residual space: an Isolation Forest cannot
extrapolate (a state beyond everything it was trained on takes the path of the most
extreme training state and scores like it), so the reference sample spreads its
splits out to residuals 1,000 times their typical size. Its thresholds come from
held-out clean traffic: ``threshold`` flags the budgeted share of clean states
(``ml_is_anomaly``), ``alert_threshold`` is above every held-out clean state (what pages).
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ml.compiled import CompiledForest
from ml.features import MODEL_COLUMNS, MODEL_FEATURES, TOP_RESIDUALS, I, model_input, residual_sizes

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default.joblib"
DEFAULT_PARAMS = {"n_estimators": 200, "max_samples": 1024, "random_state": 42}
#: Share of clean held-out states the model may flag as anomalies (``ml_is_anomaly``).
DEFAULT_BUDGET = 1e-3
#: The uniform reference sample: this share of the training rows, residuals up to this many typical sizes.
REFERENCE_SHARE = 0.01
REFERENCE_MAX_SIZE = 1000.0
#: A residual's typical size: this quantile of its absolute value in clean training traffic.
TYPICAL_QUANTILE = 0.99


class ModelError(RuntimeError):
    """A model file cannot be used; the message says why and what to do."""


def typical_sizes(clean_rows: np.ndarray) -> np.ndarray:
    sizes = np.quantile(np.abs(np.asarray(clean_rows, dtype=np.float64)[:, MODEL_COLUMNS]), TYPICAL_QUANTILE, axis=0)
    return np.where(sizes > 0, sizes, 1.0)


def train(clean_rows: np.ndarray, **params) -> tuple[Pipeline, np.ndarray]:
    """Fit on feature rows of clean traffic; returns the pipeline and the residuals' typical sizes."""
    scale = typical_sizes(clean_rows)
    return fit_forest(model_input(clean_rows, scale), **params), scale


def fit_forest(X: np.ndarray, **params) -> Pipeline:
    """The scaler and forest fitted on model inputs ``X`` plus the uniform reference sample."""
    from sklearn.ensemble import IsolationForest
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    settings = {**DEFAULT_PARAMS, **params}
    rng = np.random.default_rng(settings["random_state"])
    reference = rng.uniform(0.0, np.log1p(REFERENCE_MAX_SIZE), size=(max(1, int(len(X) * REFERENCE_SHARE)),
                                                                       X.shape[1]))
    pipeline = Pipeline([
        ("scale", StandardScaler()),
        ("forest", IsolationForest(n_jobs=1, **settings)),
    ])
    pipeline.fit(np.vstack([X, reference]))
    return pipeline


def calibrate(pipeline: Pipeline, scale: np.ndarray, clean_rows: np.ndarray, budget: float = DEFAULT_BUDGET) -> dict:
    """Thresholds from held-out clean feature rows: the budgeted share above ``threshold``, none above
    ``alert_threshold``."""
    scores = CompiledForest(pipeline).anomaly_score(model_input(clean_rows, scale))
    return {"threshold": float(np.quantile(scores, 1.0 - budget)),
            "alert_threshold": float(np.nextafter(scores.max(), np.inf)),
            "false_alarm_budget": budget, "calibration_rows": int(len(scores))}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(model_path: Path) -> Path:
    return Path(model_path).with_suffix(".json")


def arrays_path(model_path: Path) -> Path:
    """The compiled scorer's arrays beside the model (``NAME.npz``)."""
    return Path(model_path).with_suffix(".npz")


def save(pipeline: Pipeline, path: Path, *, scale: np.ndarray, calibration: dict, training_rows: int, source: str,
         params: dict, evaluation: dict | None = None) -> dict:
    import joblib
    import sklearn

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".joblib.tmp")
    joblib.dump(pipeline, tmp, compress=3)
    digest = sha256_of(tmp)
    arrays_tmp = arrays_path(path).with_suffix(".npz.tmp")
    with open(arrays_tmp, "wb") as handle:  # a file object: np.savez would add ".npz" to a name
        np.savez_compressed(handle, **CompiledForest(pipeline).arrays())
    manifest = {
        "version": digest[:12],
        "sha256": digest,
        "file": path.name,
        "arrays": {"file": arrays_path(path).name, "sha256": sha256_of(arrays_tmp)},
        "sklearn_version": sklearn.__version__,
        "features": list(MODEL_FEATURES),
        "top_residuals": TOP_RESIDUALS,
        "residual_scale": [float(x) for x in scale],
        "training_rows": training_rows,
        "training_source": source,
        "params": {**DEFAULT_PARAMS, **params},
        **calibration,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "evaluation": evaluation or {},
    }
    # Manifest first, then the model: a reader that sees the new model always finds its manifest.
    manifest_tmp = manifest_path(path).with_suffix(".json.tmp")
    manifest_tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    manifest_tmp.replace(manifest_path(path))
    arrays_tmp.replace(arrays_path(path))
    tmp.replace(path)
    return manifest


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


class LoadedModel:
    """A verified model: its manifest and its compiled scorer; the scikit-learn pipeline on demand."""

    def __init__(self, manifest: dict, scorer: CompiledForest, path: Path, pipeline: Pipeline | None = None):
        self.manifest, self.scorer, self.path = manifest, scorer, path
        self._pipeline = pipeline

    @property
    def pipeline(self) -> Pipeline:
        """The fitted scikit-learn pipeline (verified again, then ``joblib.load``): for tools that compare
        with scikit-learn or retrain; scoring never needs it."""
        if self._pipeline is None:
            self._pipeline = _load_pipeline(self.path, self.manifest)
        return self._pipeline

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def scale(self) -> np.ndarray:
        return np.asarray(self.manifest["residual_scale"], dtype=np.float64)

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"])

    @property
    def alert_threshold(self) -> float:
        return float(self.manifest["alert_threshold"])

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Anomaly scores (0..1) of feature rows (``ml.features.feature_vector``'s)."""
        return self.scorer.anomaly_score(model_input(rows, self.scale))


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


def _verify(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ModelError(
            f"{path} does not match its manifest (sha256 {actual[:12]}..., manifest says "
            f"{expected[:12]}...): refusing to load a file that may have been tampered with"
        )


def _load_pipeline(path: Path, manifest: dict) -> Pipeline:
    import joblib
    import sklearn
    from sklearn.pipeline import Pipeline

    trained_with = str(manifest.get("sklearn_version", "?"))
    if _minor(trained_with) != _minor(sklearn.__version__):
        raise ModelError(
            f"{path} was trained with scikit-learn {trained_with}, this is {sklearn.__version__}: "
            "retrain it with `make model` or install the matching scikit-learn"
        )
    _verify(path, manifest["sha256"])  # again: the file may have changed since the model was loaded
    pipeline = joblib.load(path)
    if not isinstance(pipeline, Pipeline):
        raise ModelError(f"{path} holds a {type(pipeline).__name__}, not a Pipeline")
    return pipeline


def load(path: Path = DEFAULT_MODEL) -> LoadedModel:
    """Verify, then load. Refuses a model whose files' sha256 or features do not match its manifest.
    Scoring reads only the arrays; a model saved before there were arrays is loaded through its
    pipeline (scikit-learn, of the version it was trained with)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no model at {path}: train one with `flights-app train` (see the README)")
    manifest = read_manifest(path)
    _verify(path, manifest["sha256"])
    if manifest.get("features") != list(MODEL_FEATURES) or manifest.get("top_residuals") != TOP_RESIDUALS:
        raise ModelError(f"{path} was trained on other features ({manifest.get('features')}); retrain it "
                         "with `make model`")
    scale, thresholds = manifest.get("residual_scale"), (manifest.get("threshold"), manifest.get("alert_threshold"))
    if (not isinstance(scale, list) or len(scale) != len(MODEL_FEATURES)
            or not all(isinstance(x, int | float) and x > 0 for x in scale)
            or not all(isinstance(x, int | float) for x in thresholds)):
        raise ModelError(f"{manifest_path(path)} lacks valid residual_scale, threshold or alert_threshold; retrain it")
    arrays = manifest.get("arrays")
    if arrays is None:
        pipeline = _load_pipeline(path, manifest)
        return LoadedModel(manifest, CompiledForest(pipeline), path, pipeline)
    if (not isinstance(arrays, dict) or not isinstance(arrays.get("sha256"), str)
            or arrays.get("file") != arrays_path(path).name):
        raise ModelError(f"{manifest_path(path)} names its arrays wrongly ({arrays!r}); retrain it")
    apath = arrays_path(path)
    if not apath.is_file():
        raise ModelError(f"{apath} is missing: the model's arrays are saved beside it")
    _verify(apath, arrays["sha256"])
    try:
        with np.load(apath, allow_pickle=False) as saved:
            scorer = CompiledForest.from_arrays(saved)
    except (ValueError, TypeError, OSError, zipfile.BadZipFile) as error:
        raise ModelError(f"{apath} is not a model's arrays ({error}); retrain it") from None
    return LoadedModel(manifest, scorer, path)


def explain(model: LoadedModel, row: np.ndarray, among: tuple[str, ...] = MODEL_FEATURES,
            at_least: float = 0.0) -> str | None:
    """The residual (of ``among``) furthest from its typical size in clean traffic, in words and
    numbers; None if none is at least ``at_least`` times its typical size."""
    sizes = residual_sizes(row, model.scale)[0]
    k = max((MODEL_FEATURES.index(name) for name in among), key=lambda i: sizes[i])
    if sizes[k] < at_least:
        return None
    return f"{describe(MODEL_FEATURES[k], row)} ({sizes[k]:.0f}x its typical size)"


def describe(name: str, f: np.ndarray) -> str:
    """One residual of feature row ``f`` as a sentence with the numbers behind it."""
    gap = f[I["position_gap_s"]]
    if name == "speed_log_ratio":
        return (f"reported {f[I['velocity_mps']]:.0f} m/s but moved at {f[I['implied_speed_mps']]:.0f} m/s "
                f"over {gap:.0f} s")
    if name == "altitude_residual_mps":
        return (f"altitude changed {f[I['climb_rate_mps']]:+.1f} m/s over {gap:.0f} s against a reported vertical "
                f"rate of {f[I['vertical_rate_mps']]:+.1f} m/s")
    if name == "innovation":
        return f"{f[I['prediction_error_m']]:.0f} m from where its last good report put it {gap:.0f} s later"
    if name == "speed_accel_mps2":
        return f"speed changing at {f[I['speed_accel_mps2']]:+.1f} m/s^2 over {gap:.0f} s"
    if name == "vertical_accel_mps2":
        return f"vertical rate changing at {f[I['vertical_accel_mps2']]:+.1f} m/s^2 over {gap:.0f} s"
    if name == "turn_rate_dps":
        return f"turning {abs(f[I['turn_rate_dps']]):.1f} deg/s over {gap:.0f} s"
    if name == "baro_geo_residual_m":
        return (f"barometric minus geometric altitude {f[I['baro_geo_residual_m']]:+.0f} m away from this "
                "aircraft's usual difference")
    if name == "position_age_s":
        return f"position {f[I['position_age_s']]:.0f} s older than the last contact"
    raise ValueError(f"no description for {name!r}")
