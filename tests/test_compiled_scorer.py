"""The compiled forest gives scikit-learn's score_samples to within 1e-9, on any input."""

import json

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
COMPILED = {name: CompiledForest(p) for name, p in PIPELINES.items()}


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

    save()
    m = json.loads(path.with_suffix(".json").read_text())
    m["sklearn_version"] = "0.24.2"
    path.with_suffix(".json").write_text(json.dumps(m))
    with pytest.raises(model_io.ModelError, match="trained with scikit-learn 0.24.2"):
        model_io.load(path)
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
