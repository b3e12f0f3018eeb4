"""Scoring a micro-batch: features, phase, model score, explanation, alerts and data faults. Pure.

The agent hands in a batch of states and the aircraft's previous states; it
gets back one ScoredState per input, in order, and the new previous states.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from flights_app.faust_internals import built
from flights_app.records import ScoredState, StateVector
from ml.features import FEATURES, REPORT_RESIDUALS, AircraftMemory, altitude_of
from ml.model import LoadedModel, explain
from ml.phase import flight_phase
from ml.rules import Flags, flags_of
from ml.track import track

#: A report residual this many times its typical size in an anomaly makes the anomaly a data fault.
INCONSISTENT_SIZE = 5.0


class Verdict(NamedTuple):
    is_anomaly: bool
    reason: str | None  # the model's explanation of an anomaly
    faults: list[str]  # the rules' data faults, and a model anomaly that is the report contradicting itself


def judge(model: LoadedModel, features: np.ndarray, flags: Flags, score: float) -> Verdict:
    """The model's verdict beside the rules'. A model anomaly in which the report contradicts itself
    (a residual of speed against positions, altitude against vertical rate, ... at least
    ``INCONSISTENT_SIZE`` times its typical size) says the data is wrong: a data fault. Otherwise
    it is what the flight does (accelerating, turning): a flight anomaly."""
    if score <= model.threshold:
        return Verdict(False, None, flags.faults)
    reason = explain(model, features)
    inconsistency = explain(model, features, among=REPORT_RESIDUALS, at_least=INCONSISTENT_SIZE)
    if inconsistency is None:
        return Verdict(True, reason, flags.faults)
    return Verdict(True, reason, [*flags.faults, f"inconsistent report (model): {inconsistency}"])


def pages(alerts: list[str], faults: list[str], is_anomaly: bool, score: float, alert_threshold: float) -> bool:
    """What goes to flight-alerts: the flight's alerts, and a flight anomaly scoring at least
    ``alert_threshold`` on a state with no data fault."""
    return bool(alerts) or (is_anomaly and not faults and score >= alert_threshold)


def score_batch(
    model: LoadedModel,
    states: Sequence[StateVector],
    memories: Mapping[str, AircraftMemory | None],
    *,
    now: float | None = None,
) -> tuple[list[ScoredState], dict[str, AircraftMemory]]:
    """Score ``states`` in order; an aircraft seen twice in the batch uses its own earlier state.

    Returns the scored states and the memories that changed (to write back, once per aircraft).
    """
    rows, faults, changed = track(states, memories)
    features = rows.tolist()
    flags = [flags_of(state, row, bits) for state, row, bits in zip(states, features, faults.tolist(), strict=True)]
    scores = model.score(rows) if len(states) else np.empty(0)
    score = scores.tolist()
    emitted = time.time() if now is None else now
    out = []
    for i, state in enumerate(states):
        verdict = judge(model, rows[i], flags[i], score[i])
        out.append(built(ScoredState, dict(
            state=state,
            features=dict(zip(FEATURES, features[i], strict=True)),
            flight_phase=flight_phase(state.on_ground, altitude_of(state) if not state.on_ground else None,
                                      state.vertical_rate, state.velocity),
            ml_anomaly_score=score[i],
            ml_is_anomaly=verdict.is_anomaly,
            anomaly_reason=verdict.reason,
            alerts=flags[i].alerts,
            data_faults=verdict.faults,
            model_version=model.version,
            processed_time=emitted,
        )))
    return out, changed
