"""Precision, recall and F1 of the model, the rules and both, on labelled simulated traffic."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ml.model import LoadedModel
from ml.rules import rule_flags

METHODS = ("model", "rules", "combined")


@dataclass
class Confusion:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, truth: bool, predicted: bool) -> None:
        if truth and predicted:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif truth:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn, "precision": round(self.precision, 4),
                "recall": round(self.recall, 4), "f1": round(self.f1, 4)}


@dataclass
class Evaluation:
    overall: dict = field(default_factory=lambda: {m: Confusion() for m in METHODS})
    by_kind: dict = field(default_factory=dict)  # kind -> method -> Counter(detected, total)
    rows: int = 0

    def as_dict(self) -> dict:
        return {
            "rows": self.rows,
            "overall": {m: c.as_dict() for m, c in self.overall.items()},
            "recall_by_kind": {k: {m: round(v[m]["detected"] / v[m]["total"], 4) for m in METHODS} | {"count": v["model"]["total"]}
                               for k, v in sorted(self.by_kind.items())},
        }


def evaluate(model: LoadedModel, feature_rows, batch_size: int = 4096) -> Evaluation:
    """``feature_rows``: (state, features, had_previous, label kind or None), as ml.dataset yields."""
    result = Evaluation()
    batch = []

    def flush():
        if not batch:
            return
        X = np.vstack([b[1] for b in batch])
        flagged = model.scorer.anomaly_score(X) > model.scorer.threshold
        for (state, features, had_previous, kind), by_model in zip(batch, flagged, strict=True):
            by_rules = bool(rule_flags(state, features, had_previous))
            verdict = {"model": bool(by_model), "rules": by_rules, "combined": bool(by_model) or by_rules}
            for method in METHODS:
                result.overall[method].add(kind is not None, verdict[method])
            if kind is not None:
                per = result.by_kind.setdefault(kind, {m: Counter() for m in METHODS})
                for method in METHODS:
                    per[method]["total"] += 1
                    per[method]["detected"] += verdict[method]
        result.rows += len(batch)
        batch.clear()

    for row in feature_rows:
        batch.append(row)
        if len(batch) >= batch_size:
            flush()
    flush()
    return result


def format_table(evaluation: Evaluation) -> str:
    d = evaluation.as_dict()
    lines = [f"{d['rows']} scored states", "",
             f"{'method':<10}{'precision':>10}{'recall':>8}{'F1':>8}{'TP':>8}{'FP':>8}{'FN':>8}{'TN':>10}"]
    for method, c in d["overall"].items():
        lines.append(f"{method:<10}{c['precision']:>10.3f}{c['recall']:>8.3f}{c['f1']:>8.3f}"
                     f"{c['tp']:>8}{c['fp']:>8}{c['fn']:>8}{c['tn']:>10}")
    lines += ["", f"{'recall by injected kind':<26}{'count':>7}{'model':>8}{'rules':>8}{'combined':>10}"]
    for kind, r in d["recall_by_kind"].items():
        lines.append(f"{kind:<26}{r['count']:>7}{r['model']:>8.3f}{r['rules']:>8.3f}{r['combined']:>10.3f}")
    return "\n".join(lines)
