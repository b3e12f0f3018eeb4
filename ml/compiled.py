"""A fitted StandardScaler + IsolationForest evaluated from flat arrays, compiled with numba.

It computes exactly what scikit-learn's ``Pipeline.score_samples`` computes
(the same float32 cast of the scaled input, the same comparisons with the
float64 thresholds, the same NaN routing, the same path-length correction
per leaf, the same normaliser), without scikit-learn's per-call overhead.
The property test in ``tests/test_compiled_scorer.py`` holds it to 1e-9.
"""

from __future__ import annotations

import numba
import numpy as np
from sklearn.ensemble._iforest import _average_path_length
from sklearn.pipeline import Pipeline

LEAF = -1  # scikit-learn's TREE_LEAF


@numba.njit(cache=True, nogil=True)
def _depths(x32, left, right, feature, threshold, nan_left, leaf_depth):  # pragma: no cover - compiled
    n_rows = x32.shape[0]
    n_trees = left.shape[0]
    out = np.zeros(n_rows, dtype=np.float64)
    for i in range(n_rows):
        total = 0.0
        for t in range(n_trees):  # summed tree by tree, as scikit-learn does
            node = 0
            while left[t, node] != LEAF:
                value = x32[i, feature[t, node]]
                if np.isnan(value):
                    go_left = nan_left[t, node]
                else:
                    go_left = value <= threshold[t, node]
                node = left[t, node] if go_left else right[t, node]
            total += leaf_depth[t, node]
        out[i] = total
    return out


class CompiledForest:
    """Anomaly scores from a fitted ``Pipeline([StandardScaler, IsolationForest])``.

    ``anomaly_score(X)`` is ``-pipeline.score_samples(X)``: in (0, 1], higher is
    more anomalous; ``threshold`` is the model's own cut (``-offset_``), so
    ``anomaly_score > threshold`` is exactly ``pipeline.predict(X) == -1``.
    """

    def __init__(self, pipeline: Pipeline):
        scaler, forest = pipeline.steps[0][1], pipeline.steps[-1][1]
        self.mean = np.asarray(scaler.mean_, dtype=np.float64)
        self.scale = np.asarray(scaler.scale_, dtype=np.float64)
        self.n_features = self.mean.shape[0]
        trees = [est.tree_ for est in forest.estimators_]
        width = max(t.node_count for t in trees)
        n = len(trees)
        self.left = np.full((n, width), LEAF, dtype=np.int64)
        self.right = np.full((n, width), LEAF, dtype=np.int64)
        self.feature = np.zeros((n, width), dtype=np.int64)
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
        self.denominator = float(len(trees) * _average_path_length([forest._max_samples])[0])
        self.threshold = float(-forest.offset_)

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
        depths = _depths(x32, self.left, self.right, self.feature, self.split_threshold, self.nan_left, self.leaf_depth)
        if self.denominator == 0:
            return np.ones_like(depths)
        return 2.0 ** (-depths / self.denominator)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """What scikit-learn's ``score_samples`` returns (the opposite of the anomaly score)."""
        return -self.anomaly_score(X)
