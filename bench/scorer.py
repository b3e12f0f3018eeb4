"""Scorer benchmark: scikit-learn's score_samples against the compiled forest, side by side.

    python -m bench.scorer [--quick]

Both score the same rows of real features (simulated traffic) with the shipped
default model, in the same process, alternating, so a ratio holds on a busy
machine. Writes bench/results/scorer.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from ml import dataset
from ml import model as model_io
from ml.features import model_input

BATCH_SIZES = (1, 10, 100, 1000, 10000)
RESULTS = Path(__file__).resolve().parent / "results"


def best_rate(fn, rows: int, min_time_s: float, repeats: int) -> float:
    """Rows per second of the fastest of ``repeats`` timed runs of at least ``min_time_s`` each."""
    best = float("inf")
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time_s:
                break
        best = min(best, elapsed / calls)
    return rows / best


def run(quick: bool = False) -> dict:
    """Rows per second of both scorers at each batch size (a ratio from the same run)."""
    min_time, repeats = (0.05, 1) if quick else (0.3, 3)
    model = model_io.load(model_io.DEFAULT_MODEL)
    rows = np.array([r.features for r in dataset.feature_rows(dataset.simulated_polls(200, seed=7, minutes=5))])
    X = model_input(rows, model.scale)  # what the pipeline sees of them
    model.scorer.anomaly_score(X[:1])  # compile outside the timing
    rows_out = []
    for n in BATCH_SIZES:
        batch = np.ascontiguousarray(X[:n])
        np.testing.assert_allclose(model.scorer.score_samples(batch), model.pipeline.score_samples(batch), atol=1e-9)
        sk = best_rate(lambda b=batch: model.pipeline.score_samples(b), n, min_time, repeats)
        compiled = best_rate(lambda b=batch: model.scorer.anomaly_score(b), n, min_time, repeats)
        rows_out.append({"batch": n, "sklearn_rows_per_s": round(sk, 1), "compiled_rows_per_s": round(compiled, 1),
                         "speedup": round(compiled / sk, 1)})
    return {
        "benchmark": "scorer",
        "quick": quick,
        "conditions": {"model": model.version, "n_estimators": model.manifest["params"]["n_estimators"],
                       "features": len(model.manifest["features"]), "cores": os.cpu_count(),
                       "machine": platform.machine(), "python": platform.python_version(),
                       "timing": f"best of {repeats} runs of >= {min_time} s, sklearn and compiled alternating"},
        "rows": rows_out,
    }


def table(report: dict) -> str:
    lines = ["| batch rows | scikit-learn rows/s | compiled rows/s | speed-up |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['batch']:,} | {r['sklearn_rows_per_s']:,.0f} | {r['compiled_rows_per_s']:,.0f} | "
              f"{r['speedup']:,.1f}x |"
              for r in report["rows"]]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="short runs: checks the harness, not speeds")
    args = parser.parse_args(argv)
    report = run(args.quick)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scorer.json").write_text(json.dumps(report, indent=2) + "\n")
    conditions = report["conditions"]
    (RESULTS / "scorer.md").write_text(f"Scorer ({conditions['timing']}; model {conditions['model']}, "
                                       f"{conditions['n_estimators']} trees, {os.cpu_count()} "
                                       f"cores)\n\n{table(report)}\n")
    print(table(report))
    return report


if __name__ == "__main__":
    main()
