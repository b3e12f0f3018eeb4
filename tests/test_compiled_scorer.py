"""The compiled forest (as a model's saved arrays give it to the worker) gives scikit-learn's
score_samples to within 1e-9, on any input; a model's files are verified before anything is read."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ml import model as model_io
from ml.compiled import CompiledForest
from ml.features import N_FEATURES as FEATURE_COLUMNS
from ml.features import model_input

rng = np.random.default_rng(0)
N_FEATURES = 12  # the scorer is compared with scikit-learn on any number of dimensions
TRAIN = rng.normal(size=(3000, N_FEATURES)) * rng.uniform(0.1, 1000, N_FEATURES) + rng.uniform(-50, 50, N_FEATURES)


def pipeline(**params) -> Pipeline:
    return Pipeline([("scale", StandardScaler()),
                     ("forest", IsolationForest(random_state=1, **params))]).fit(TRAIN)


PIPELINES = {
    "all features": pipeline(n_estimators=60, contamination=0.01),
    "feature subsampling": pipeline(n_estimators=40, max_features=0.5, max_samples=300),
}


def saved_and_loaded(scorer: CompiledForest) -> CompiledForest:
    """The scorer as the worker gets it: its arrays saved as a model's .npz and read back without pickle."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **scorer.arrays())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as saved:
        return CompiledForest.from_arrays(saved)


COMPILED = {name: saved_and_loaded(CompiledForest(p)) for name, p in PIPELINES.items()}


def assert_same(name, X):
    expected = PIPELINES[name].score_samples(X)
    actual = COMPILED[name].score_samples(X)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", PIPELINES)
def test_same_scores_on_training_like_and_far_away_inputs(name):
    assert_same(name, TRAIN[:500])
    assert_same(name, TRAIN[:500] * 1e6)  # far outside the training range
    assert_same(name, -TRAIN[:50] * 1e-9)
    assert_same(name, TRAIN[:1])  # a single row


@pytest.mark.parametrize("name", PIPELINES)
def test_same_scores_at_ties_with_the_split_thresholds(name):
    compiled = COMPILED[name]
    forest_thresholds = compiled.split_threshold[compiled.left != -1]
    # Inputs whose scaled, float32-cast value lands exactly on split thresholds.
    z = rng.choice(forest_thresholds, size=(400, N_FEATURES)).astype(np.float32).astype(np.float64)
    X = z * compiled.scale + compiled.mean
    assert_same(name, X)
    # And the neighbouring float32 values either side of each threshold.
    assert_same(name, np.nextafter(z.astype(np.float32),
                                   np.float32(np.inf)).astype(np.float64) * compiled.scale + compiled.mean)
    assert_same(name, np.nextafter(z.astype(np.float32),
                                   np.float32(-np.inf)).astype(np.float64) * compiled.scale + compiled.mean)


@pytest.mark.parametrize("name", PIPELINES)
def test_missing_values_go_where_scikit_learn_sends_them(name):
    X = TRAIN[:200].copy()
    X[rng.random(X.shape) < 0.2] = np.nan
    assert_same(name, X)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 30), st.just(N_FEATURES)),
              elements=st.floats(min_value=-1e30, max_value=1e30) | st.just(np.nan)))
def test_same_scores_on_arbitrary_inputs(X):
    for name in PIPELINES:
        assert_same(name, X)


def test_anomaly_threshold_is_the_models_own_cut():
    compiled, pipeline = COMPILED["all features"], PIPELINES["all features"]
    X = np.vstack([TRAIN[:1000], TRAIN[:50] * 20])
    flagged = compiled.anomaly_score(X) > compiled.threshold
    np.testing.assert_array_equal(flagged, pipeline.predict(X) == -1)
    assert flagged[1000:].all() and 0 < flagged[:1000].mean() < 0.05


def test_a_tampered_or_swapped_model_is_refused(tmp_path):
    rows = np.abs(rng.normal(size=(3000, FEATURE_COLUMNS)))
    fitted, scale = model_io.train(rows, n_estimators=30)
    calibration = model_io.calibrate(fitted, scale, rows[:1000])
    path = tmp_path / "m.joblib"

    def save():
        return model_io.save(fitted, path, scale=scale, calibration=calibration, training_rows=3000, source="random",
                             params={})

    manifest = save()
    loaded = model_io.load(path)
    assert loaded.version == manifest["sha256"][:12]
    assert loaded.threshold == calibration["threshold"] < loaded.alert_threshold == calibration["alert_threshold"]
    np.testing.assert_array_equal(loaded.score(rows[:10]), CompiledForest(fitted).anomaly_score(model_input(rows[:10],
                                                                                                             scale)))

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(model_io.ModelError, match="does not match its manifest"):
        model_io.load(path)

    save()  # the arrays tampered with: refused too, though the pipeline is fine
    arrays = model_io.arrays_path(path)
    data = bytearray(arrays.read_bytes())
    data[len(data) // 2] ^= 0xFF
    arrays.write_bytes(bytes(data))
    with pytest.raises(model_io.ModelError, match=r"m\.npz does not match its manifest"):
        model_io.load(path)

    save()  # scoring needs no scikit-learn; its pipeline, asked for, must be of the version it was made with
    m = json.loads(path.with_suffix(".json").read_text())
    m["sklearn_version"] = "0.24.2"
    path.with_suffix(".json").write_text(json.dumps(m))
    loaded = model_io.load(path)
    with pytest.raises(model_io.ModelError, match="trained with scikit-learn 0.24.2"):
        loaded.pipeline  # noqa: B018 - the property loads it
    del m["arrays"]  # a model saved before there were arrays: loaded through its pipeline
    path.with_suffix(".json").write_text(json.dumps(m))
    with pytest.raises(model_io.ModelError, match="trained with scikit-learn 0.24.2"):
        model_io.load(path)
    m["sklearn_version"] = __import__("sklearn").__version__
    path.with_suffix(".json").write_text(json.dumps(m))
    np.testing.assert_array_equal(model_io.load(path).score(rows[:10]), loaded.score(rows[:10]))
    save()
    m = json.loads(path.with_suffix(".json").read_text())
    del m["residual_scale"]
    path.with_suffix(".json").write_text(json.dumps(m))
    with pytest.raises(model_io.ModelError, match="lacks valid residual_scale"):
        model_io.load(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(model_io.ModelError, match="manifest"):
        model_io.load(path)
    with pytest.raises(model_io.ModelError, match="no model at"):
        model_io.load(tmp_path / "none.joblib")


def test_the_worker_scores_without_unpickling_or_importing_scikit_learn():
    """Loading a verified model reads plain arrays (np.load without pickle): no code in a model file runs,
    and the worker starts without scikit-learn's import (about 1.4 s here)."""
    probe = ("import sys, numpy as np; from ml import model; from ml.features import N_FEATURES; "
             "m = model.load(); m.score(np.zeros((2, N_FEATURES))); "
             "print(sorted(n for n in sys.modules if n.split('.')[0] in ('sklearn', 'joblib')))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", run.stdout
