"""A fitted StandardScaler + IsolationForest evaluated from flat arrays, compiled with numba.

It computes exactly what scikit-learn's ``Pipeline.score_samples`` computes
(the same float32 cast of the scaled input, the same comparisons with the
float64 thresholds, the same NaN routing, the same path-length correction
per leaf, the same normaliser), without scikit-learn's per-call overhead.
The property test in ``tests/test_compiled_scorer.py`` holds it to 1e-9.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

LEAF = -1  # scikit-learn's TREE_LEAF


#: Batches at least this large are split over the cores; smaller ones are not worth the threads.
PARALLEL_MIN_ROWS = 512
CHUNK_ROWS = 256


@numba.njit(cache=True, nogil=True, inline="always")
def _chunk(x32, lo, hi, left, right, feature, threshold, nan_left, leaf_depth, out, any_nan):  # pragma: no cover
    """Tree-major over rows lo..hi: one tree's nodes stay in cache while the rows go through it.
    Each row's sum still adds the trees in order, as scikit-learn does. Without NaN in the
    batch the NaN test (a second unpredictable branch per node) is left out."""
    for t in range(left.shape[0]):
        tl, tr, tf, tt, tn, td = left[t], right[t], feature[t], threshold[t], nan_left[t], leaf_depth[t]
        for i in range(lo, hi):
            node = 0
            if any_nan:
                while tl[node] != LEAF:
                    value = x32[i, tf[node]]
                    go_left = tn[node] if np.isnan(value) else value <= tt[node]
                    node = tl[node] if go_left else tr[node]
            else:
                while tl[node] != LEAF:
                    node = tl[node] if x32[i, tf[node]] <= tt[node] else tr[node]
            out[i] += td[node]


@numba.njit(cache=True, nogil=True)
def _depths(x32, left, right, feature, threshold, nan_left, leaf_depth, any_nan):  # pragma: no cover
    out = np.zeros(x32.shape[0], dtype=np.float64)
    _chunk(x32, 0, x32.shape[0], left, right, feature, threshold, nan_left, leaf_depth, out, any_nan)
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _depths_parallel(x32, left, right, feature, threshold, nan_left, leaf_depth, any_nan):  # pragma: no cover
    n = x32.shape[0]
    out = np.zeros(n, dtype=np.float64)
    n_chunks = (n + CHUNK_ROWS - 1) // CHUNK_ROWS
    for c in numba.prange(n_chunks):
        lo = c * CHUNK_ROWS
        _chunk(x32, lo, min(n, lo + CHUNK_ROWS), left, right, feature, threshold, nan_left, leaf_depth, out, any_nan)
    return out


def float32_at_or_below(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 <= each threshold: for a float32 x, ``x <= t`` exactly when ``x <= this``."""
    t32 = thresholds.astype(np.float32)
    above = t32.astype(np.float64) > thresholds
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


class CompiledForest:
    """Anomaly scores from a fitted ``Pipeline([StandardScaler, IsolationForest])``.

    ``anomaly_score(X)`` is ``-pipeline.score_samples(X)``: in (0, 1], higher is
    more anomalous; ``threshold`` is the model's own cut (``-offset_``), so
    ``anomaly_score > threshold`` is exactly ``pipeline.predict(X) == -1``.
    """

    #: What ``arrays`` holds: everything scoring needs, as plain arrays (no pickle, no scikit-learn).
    ARRAYS = ("mean", "scale", "left", "right", "feature", "split_threshold", "split_threshold32", "nan_left",
              "leaf_depth", "denominator", "threshold")

    def __init__(self, pipeline: Pipeline):
        from sklearn.ensemble._iforest import _average_path_length

        scaler, forest = pipeline.steps[0][1], pipeline.steps[-1][1]
        self.mean = np.asarray(scaler.mean_, dtype=np.float64)
        self.scale = np.asarray(scaler.scale_, dtype=np.float64)
        self.n_features = self.mean.shape[0]
        trees = [est.tree_ for est in forest.estimators_]
        width = max(t.node_count for t in trees)
        n = len(trees)
        self.left = np.full((n, width), LEAF, dtype=np.int32)
        self.right = np.full((n, width), LEAF, dtype=np.int32)
        self.feature = np.zeros((n, width), dtype=np.int32)
        self.split_threshold = np.zeros((n, width), dtype=np.float64)
        self.nan_left = np.zeros((n, width), dtype=np.bool_)
        self.leaf_depth = np.zeros((n, width), dtype=np.float64)
        subsample = forest._max_features != self.n_features
        for i, (tree, features, path_len, avg_len) in enumerate(zip(
            trees, forest.estimators_features_, forest._decision_path_lengths,
            forest._average_path_length_per_tree, strict=True,
        )):
            k = tree.node_count
            self.left[i, :k] = tree.children_left
            self.right[i, :k] = tree.children_right
            tree_feature = np.where(tree.feature >= 0, tree.feature, 0)
            self.feature[i, :k] = np.asarray(features)[tree_feature] if subsample else tree_feature
            self.split_threshold[i, :k] = tree.threshold
            missing = getattr(tree, "missing_go_to_left", None)
            if missing is not None:
                self.nan_left[i, :k] = np.asarray(missing, dtype=bool)
            self.leaf_depth[i, :k] = path_len + avg_len - 1.0
        self.split_threshold32 = float32_at_or_below(self.split_threshold)
        self.denominator = float(len(trees) * _average_path_length([forest._max_samples])[0])
        self.threshold = float(-forest.offset_)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(getattr(self, name)) for name in self.ARRAYS}

    @classmethod
    def from_arrays(cls, arrays) -> CompiledForest:
        """The scorer ``arrays`` describes (``np.load`` of a saved ``arrays()``); ValueError if they do
        not describe one."""
        missing = [name for name in cls.ARRAYS if name not in arrays]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        self = cls.__new__(cls)
        kinds = {"left": np.int32, "right": np.int32, "feature": np.int32, "nan_left": np.bool_,
                 "split_threshold32": np.float32}
        for name in cls.ARRAYS:
            value = np.asarray(arrays[name])
            if name in ("denominator", "threshold"):
                if value.shape != ():
                    raise ValueError(f"{name} is not one number")
                setattr(self, name, float(value))
            else:
                setattr(self, name, np.ascontiguousarray(value, dtype=kinds.get(name, np.float64)))
        self.n_features = self.mean.shape[0]
        trees = self.left.shape
        same_shape = all(getattr(self, n).shape == trees for n in (
            "right", "feature", "split_threshold", "split_threshold32", "nan_left", "leaf_depth"))
        children = np.concatenate([self.left.ravel(), self.right.ravel()])
        in_bounds = not children.size or (children.min() >= LEAF and children.max() < trees[1]
                                          and self.feature.min() >= 0 and self.feature.max() < self.n_features)
        if self.scale.shape != self.mean.shape or len(trees) != 2 or not same_shape or not in_bounds:
            raise ValueError("the arrays do not describe one forest")
        return self

    def prepare(self, X: np.ndarray) -> np.ndarray:
        """Scale as the StandardScaler does (float64), then cast as the forest does (float32)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {X.shape[1]}")
        return ((X - self.mean) / self.scale).astype(np.float32)

    def anomaly_score(self, X: np.ndarray) -> np.ndarray:
        x32 = np.ascontiguousarray(self.prepare(X))
        kernel = _depths_parallel if len(x32) >= PARALLEL_MIN_ROWS else _depths
        any_nan = bool(np.isnan(x32).any())
        depths = kernel(x32, self.left, self.right, self.feature, self.split_threshold32, self.nan_left,
                        self.leaf_depth, any_nan)
        if self.denominator == 0:
            return np.ones_like(depths)
        return 2.0 ** (-depths / self.denominator)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """What scikit-learn's ``score_samples`` returns (the opposite of the anomaly score)."""
        return -self.anomaly_score(X)
