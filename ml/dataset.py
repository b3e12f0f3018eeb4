"""Feature rows from simulated traffic or a recording, computed as the worker computes them.

Used by ``flights-app train`` and ``flights-app evaluate``: the same validator,
the same features and rules (``ml.track``), polls in time order with per-aircraft memory.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from flights_app.fake_opensky.anomalies import ANOMALY_KINDS, inject, unit
from flights_app.records import StateVector
from flights_app.validation import validate_state
from ml.features import AircraftMemory
from ml.rules import Flags, flags_of
from ml.track import track

# Indices of OpenSky's state vector arrays that an injected anomaly touches.
_ICAO, _TP, _LC, _LON, _LAT, _BARO, _GROUND, _VEL, _VR, _SQUAWK = 0, 3, 4, 5, 6, 7, 8, 9, 11, 14


@dataclass
class Poll:
    time: int
    rows: list
    labels: dict = field(default_factory=dict)  # (icao24, last_contact) -> kind


def simulated_polls(n_aircraft: int, *, seed: int, minutes: float, poll_s: float = 5.0,
                    anomaly_rate: float = 0.01, epoch: float = 1_790_000_000, extended: bool = False) -> Iterator[Poll]:
    from flights_app.fake_opensky.simulator import Simulator

    sim = Simulator(n_aircraft, seed=seed, epoch=epoch, anomaly_rate=anomaly_rate)
    steps = int(minutes * 60 / poll_s)
    for k in range(steps):
        t = int(epoch + k * poll_s)
        rows, labels = sim.states_at(t, extended=extended)  # extended: each row ends with its category
        yield Poll(t, rows, {(lb.icao24, lb.last_contact): lb.kind for lb in labels})


def recorded_polls(path: Path, *, keep=None) -> Iterator[Poll]:
    """The polls of a recording; with ``keep(icao24) -> bool``, only those aircraft's rows."""
    from flights_app.fake_opensky.recordings import load_recording

    for poll in load_recording(path):
        rows = poll.states or []
        yield Poll(poll.time, rows if keep is None else [r for r in rows if keep(r[_ICAO])])


def injected_polls(polls: Iterable[Poll], *, seed: int, rate: float,
                   kinds: tuple[str, ...] = ANOMALY_KINDS) -> Iterator[Poll]:
    """``polls`` with anomalies injected into a share ``rate`` of airborne states, labelled.

    The same injection as the simulator's (``flights_app.fake_opensky.anomalies``); a frozen
    position takes the aircraft's own recorded position from before. A state repeated in a
    later poll gets the same anomaly (the draw depends on the aircraft and its last contact).
    """
    history: dict[str, tuple[list[int], list[tuple[float, float]]]] = {}
    for poll in polls:
        rows, labels = [], {}
        for original in poll.rows:
            row = list(original)
            icao24, tp, lc = row[_ICAO], row[_TP], row[_LC]
            known = tp is not None and row[_LAT] is not None and row[_LON] is not None
            if known:
                times, places = history.setdefault(icao24, ([], []))
                if not times or tp > times[-1]:
                    times.append(tp)
                    places.append((row[_LAT], row[_LON]))
            airborne = known and not row[_GROUND] and row[_BARO] is not None and row[_VEL] is not None
            if airborne and unit(seed, icao24, lc, "anomaly") < rate:
                kind = kinds[int(unit(seed, icao24, lc, "kind") * len(kinds))]
                times, places = history[icao24]

                def earlier(when: int, times=times, places=places) -> tuple[float, float] | None:
                    i = bisect_right(times, when) - 1
                    return places[i] if i >= 0 else None

                values = {"velocity": row[_VEL], "alt": row[_BARO], "lat": row[_LAT], "lon": row[_LON],
                          "squawk": row[_SQUAWK], "time_position": tp, "vertical_rate": row[_VR]}
                sign = 1 if unit(seed, icao24, lc, "sign") < 0.5 else -1
                inject(kind, values, unit(seed, icao24, lc, "size"), sign, earlier)
                row[_VEL], row[_BARO], row[_LAT], row[_LON] = (values["velocity"], values["alt"], values["lat"],
                                                             values["lon"])
                row[_SQUAWK], row[_TP], row[_VR] = values["squawk"], values["time_position"], values["vertical_rate"]
                labels[(icao24, lc)] = kind
            rows.append(row)
        yield Poll(poll.time, rows, labels)


def valid_states(poll: Poll) -> list[StateVector]:
    out = []
    for row in poll.rows:
        checked = validate_state(row, poll.time, ingest_time=float(poll.time), poll_id="dataset")
        if isinstance(checked, StateVector):
            out.append(checked)
    return out


class Row(NamedTuple):
    """One state as the worker scores it, with its label (an injected kind, or None)."""

    state: StateVector
    features: np.ndarray
    flags: Flags
    kind: str | None
    poll_time: int


def feature_rows(polls: Iterable[Poll], progress=None) -> Iterator[Row]:
    """Rows in stream order, keeping per-aircraft memory exactly as the scoring agent does (``ml.track``)."""
    memories: dict[str, AircraftMemory] = {}
    for poll in polls:
        states = valid_states(poll)
        rows, faults, changed = track(states, memories)
        for state, features, bits in zip(states, rows, faults.tolist(), strict=True):
            yield Row(state, features, flags_of(state, features, bits),
                      poll.labels.get((state.icao24, state.last_contact)), poll.time)
        memories.update(changed)
        if progress is not None:
            progress.update(1)


# -- the evaluation's and training's sources -----------------------------------------------

FRANCE = "real_traffic_france_2021-10-07_5s.zip"
#: Ordinary real traffic: the France trajectories at 5 s, and OpenSky's own responses around Washington.
ORDINARY = (FRANCE, "opensky_dcmetro_2023-03-18_900polls.zip", "opensky_dulles_2023-03-14_450polls.zip")
GLITCHES = "real_glitches_5flights_5s.zip"
UNUSUAL = "real_unusual_flights_5s.zip"
#: Ordinary real traffic is split by aircraft: one part trains, one calibrates the thresholds,
#: one is held out for the evaluation.
TRAIN_PART, CALIBRATE_PART, TEST_PART = 0, 1, 2


def part_of(icao24: str) -> int:
    return int.from_bytes(hashlib.blake2b(icao24.encode(), digest_size=2).digest(), "big") % 3


def part_polls(path: Path, part: int) -> Iterator[Poll]:
    """The polls of a recording, with only the aircraft of one part of the split."""
    return recorded_polls(Path(path), keep=lambda icao24: part_of(icao24) == part)


def clean_features(rows: Iterable[Row]) -> np.ndarray:
    """The feature rows of states with no data fault, no alert and nothing injected: what trains and calibrates."""
    kept = [r.features for r in rows if r.kind is None and not r.flags.faults and not r.flags.alerts]
    return np.vstack(kept) if kept else np.empty((0, 0))


@dataclass
class Source:
    """Polls that train or calibrate the model (``purpose``), described for people."""

    purpose: str  # "train" or "calibrate"
    name: str
    polls: Iterable[Poll]
    steps: int | None  # how many polls, when known


def training_sources(aircraft: int, minutes: float, seed: int, data: Path | None) -> list[Source]:
    """Clean simulated traffic (seed ``seed`` trains, ``seed + 2`` calibrates, half as long) and, with
    ``data``, the training and calibration parts of every ordinary recording."""
    steps = int(minutes * 60 / 5.0)
    sources = [
        Source("train", "training traffic", simulated_polls(aircraft, seed=seed, minutes=minutes, anomaly_rate=0.0),
               steps),
        Source("calibrate", "calibration traffic",
               simulated_polls(aircraft, seed=seed + 2, minutes=minutes / 2, anomaly_rate=0.0), steps // 2),
    ]
    for name in ORDINARY if data is not None else ():
        sources += [Source("train", f"{name} (training part)", part_polls(Path(data) / name, TRAIN_PART), None),
                    Source("calibrate", f"{name} (calibration part)", part_polls(Path(data) / name, CALIBRATE_PART),
                           None)]
    return sources


def describe_sources(aircraft: int, minutes: float, seed: int, data: Path | None) -> tuple[str, str]:
    """What trained and what calibrated, in words (for the manifest)."""
    train = f"simulator: {aircraft} aircraft, {minutes:g} min at 5 s polls, seed {seed}, no anomalies"
    calibrate = f"simulator seed {seed + 2}, {minutes / 2:g} min"
    if data is not None:
        train += f"; {', '.join(ORDINARY)}: aircraft of part {TRAIN_PART} of 3"
        calibrate += f"; the same recordings, aircraft of part {CALIBRATE_PART} of 3"
    return train, calibrate
