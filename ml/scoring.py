"""Scoring a micro-batch: features, phase, model score, explanation, rule flags. Pure.

The agent hands in a batch of states and the aircraft's previous states; it
gets back one ScoredState per input, in order, and the new previous states.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from flights_app.records import ScoredState, StateVector
from ml.features import FEATURES, AircraftMemory, altitude_of, feature_vector, previous_for
from ml.model import LoadedModel, explain
from ml.phase import flight_phase
from ml.rules import remember_after, rule_flags


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
    latest: dict[str, AircraftMemory | None] = dict(memories)
    touched: list[str] = []
    rows = np.empty((len(states), len(FEATURES)), dtype=np.float64)
    alerts = []
    for i, state in enumerate(states):
        memory = latest.get(state.icao24)
        before = previous_for(memory, state)
        rows[i] = feature_vector(state, before)
        alerts.append(rule_flags(state, rows[i], before is not None))
        after = remember_after(state, memory, alerts[i])
        if after is not memory:
            latest[state.icao24] = after
            touched.append(state.icao24)
    scores = model.scorer.anomaly_score(rows) if len(states) else np.empty(0)
    threshold = model.scorer.threshold
    emitted = time.time() if now is None else now
    out = []
    for i, state in enumerate(states):
        is_anomaly = bool(scores[i] > threshold)
        out.append(ScoredState(
            state=state,
            features=dict(zip(FEATURES, rows[i].tolist(), strict=True)),
            flight_phase=flight_phase(state.on_ground, altitude_of(state) if not state.on_ground else None,
                                      state.vertical_rate, state.velocity),
            ml_anomaly_score=float(scores[i]),
            ml_is_anomaly=is_anomaly,
            anomaly_reason=explain(model.scorer, rows[i]) if is_anomaly else None,
            alerts=alerts[i],
            model_version=model.version,
            processed_time=emitted,
        ))
    return out, {icao: latest[icao] for icao in touched}
