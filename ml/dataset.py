"""Feature rows from simulated traffic or a recording, computed as the worker computes them.

Used by ``flights-app train`` and ``flights-app evaluate``: the same validator,
the same ``feature_vector``, polls in time order with per-aircraft previous state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flights_app.records import StateVector
from flights_app.validation import validate_state
from ml.features import AircraftMemory


@dataclass
class Poll:
    time: int
    rows: list
    labels: dict = field(default_factory=dict)  # (icao24, last_contact) -> kind


def simulated_polls(n_aircraft: int, *, seed: int, minutes: float, poll_s: float = 5.0,
                    anomaly_rate: float = 0.01, epoch: float = 1_790_000_000) -> Iterator[Poll]:
    from flights_app.fake_opensky.simulator import Simulator

    sim = Simulator(n_aircraft, seed=seed, epoch=epoch, anomaly_rate=anomaly_rate)
    steps = int(minutes * 60 / poll_s)
    for k in range(steps):
        t = int(epoch + k * poll_s)
        rows, labels = sim.states_at(t)
        yield Poll(t, rows, {(lb.icao24, lb.last_contact): lb.kind for lb in labels})


def recorded_polls(path: Path) -> Iterator[Poll]:
    from flights_app.fake_opensky.recordings import load_recording

    for poll in load_recording(path):
        yield Poll(poll.time, poll.states or [])


def valid_states(poll: Poll) -> list[StateVector]:
    out = []
    for row in poll.rows:
        checked = validate_state(row, poll.time, ingest_time=float(poll.time), poll_id="dataset")
        if isinstance(checked, StateVector):
            out.append(checked)
    return out


def feature_rows(polls, progress=None):
    """Yield (state, features, had_previous, label kind or None) in stream order,
    keeping per-aircraft previous state exactly as the scoring agent does."""
    from ml.features import feature_vector, previous_for
    from ml.rules import remember_after, rule_flags

    memories: dict[str, AircraftMemory] = {}
    for poll in polls:
        for state in valid_states(poll):
            memory = memories.get(state.icao24)
            before = previous_for(memory, state)
            features = feature_vector(state, before)
            yield state, features, before is not None, poll.labels.get((state.icao24, state.last_contact))
            memories[state.icao24] = remember_after(state, memory, rule_flags(state, features, before is not None))
        if progress is not None:
            progress.update(1)
