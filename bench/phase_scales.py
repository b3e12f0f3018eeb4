"""Residuals normalised once for all traffic, or per flight phase: which detects better?

    python -m bench.phase_scales [--data ../shared/data]      (about 2 minutes)

The same training, calibration (a 0.1% false-alarm budget) and test traffic as
`flights-app train` and `flights-app evaluate`; only the residuals' typical sizes
differ: one set for all traffic (what the shipped model does), one per phase group
(ground, climb, cruise, descent, approach), and one per phase but never below the
global size. Prints the model alone's precision, recall and F1 over the kinematic
kinds, on simulated and on real traffic, and its anomalies on clean real traffic
and on the unusual flights.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from ml import dataset, evaluate
from ml import model as model_io
from ml.compiled import CompiledForest
from ml.features import MODEL_COLUMNS, TOP_RESIDUALS, altitude_of
from ml.phase import flight_phase

GROUPS = {"ground": "ground", "takeoff": "climb", "climb": "climb", "cruise": "cruise", "level": "cruise",
          "descent": "descent", "approach": "approach", "landing": "approach"}
VARIANTS = ("global", "per phase", "per phase, at least global")


def phase(row) -> str:
    s = row.state
    return GROUPS[flight_phase(s.on_ground, altitude_of(s) if not s.on_ground else None, s.vertical_rate, s.velocity)]


def clean(rows) -> list:
    return [r for r in rows if r.kind is None and not r.flags.faults and not r.flags.alerts]


def features(rows) -> np.ndarray:
    return np.vstack([r.features for r in rows])


def measure(variant: str, train: list, calibrate: list, tests: dict, left_out: set) -> dict:
    everywhere = model_io.typical_sizes(features(train))
    by_phase: dict[str, list] = defaultdict(list)
    for r in train:
        by_phase[phase(r)].append(r.features)
    sizes = {p: model_io.typical_sizes(np.vstack(v)) for p, v in by_phase.items() if len(v) >= 1000}
    if variant == "per phase, at least global":
        sizes = {p: np.maximum(s, everywhere) for p, s in sizes.items()}

    def model_input(rows) -> np.ndarray:
        scale = everywhere if variant == "global" else np.vstack([sizes.get(phase(r), everywhere) for r in rows])
        z = np.abs(features(rows)[:, MODEL_COLUMNS]) / scale
        return np.log1p(-np.sort(-z, axis=1)[:, :TOP_RESIDUALS])

    scorer = CompiledForest(model_io.fit_forest(model_input(train), random_state=1))
    threshold = np.quantile(scorer.anomaly_score(model_input(calibrate)), 1 - model_io.DEFAULT_BUDGET)
    out = {}
    for name, rows in tests.items():
        flagged = scorer.anomaly_score(model_input(rows)) > threshold
        if name.startswith("anomalies"):
            out[name] = int(flagged.sum())
            continue
        confusion = evaluate.Confusion()
        for r, f in zip(rows, flagged, strict=True):
            if r.kind is None and (r.state.icao24, r.state.last_contact) in left_out:
                continue
            if r.kind is None or r.kind in evaluate.KINEMATIC:
                confusion.add(r.kind is not None, bool(f))
        out[name] = confusion.as_dict()
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/data")
    data = Path(parser.parse_args(argv).data)

    def simulated(seed: int, minutes: float, rate: float = 0.0) -> list:
        return list(dataset.feature_rows(dataset.simulated_polls(300, seed=seed, minutes=minutes, anomaly_rate=rate)))

    rows: dict[str, list] = {"train": [], "calibrate": []}
    for source in dataset.training_sources(300, 60.0, 1, data):  # `make model`'s sources
        rows[source.purpose] += clean(dataset.feature_rows(source.polls))
    train, calibrate = rows["train"], rows["calibrate"]
    france = list(dataset.feature_rows(dataset.part_polls(data / dataset.FRANCE, dataset.TEST_PART)))
    tests = {
        "simulated": simulated(evaluate.SIMULATED["seed"], evaluate.SIMULATED["minutes"], evaluate.SIMULATED["rate"]),
        "real": list(dataset.feature_rows(dataset.injected_polls(dataset.part_polls(
            data / dataset.FRANCE, dataset.TEST_PART), seed=evaluate.INJECT_SEED, rate=evaluate.INJECT_RATE))),
        "anomalies on clean real traffic": france,
        "anomalies on the unusual flights": list(dataset.feature_rows(dataset.recorded_polls(data / dataset.UNUSUAL))),
    }
    left_out = {(r.state.icao24, r.state.last_contact) for r in france if r.flags.faults}
    for variant in VARIANTS:
        result = measure(variant, train, calibrate, tests, left_out)
        print(f"{variant}: " + "; ".join(
            f"{k} P/R/F1 {v['precision']:.3f}/{v['recall']:.3f}/{v['f1']:.3f}" if isinstance(v, dict) else f"{k} {v}"
            for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
