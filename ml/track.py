"""Each aircraft's track through a batch of states, compiled: features, the rules' gate and memory.

A state's features compare it with its aircraft's last good state (``ml.features``); a state
with a data fault (``ml.rules.fault_bits``) is not remembered, so the next one is compared
with the last good one. The chain runs in stream order, one aircraft's states depending on its
earlier ones in the batch, so it is one compiled loop over the batch (``_track``): the
features, the faults and each aircraft's memory after every state, without a Python call per
state. The worker (``ml.scoring.score_batch``), training and the evaluation
(``ml.dataset.feature_rows``) all go through ``track``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from numba import njit

from ml.features import (
    N_FEATURES,
    N_PREVIOUS_COLUMNS,
    N_STATE_COLUMNS,
    P_CONTACT,
    P_TIME,
    S_CONTACT,
    S_TIME,
    AircraftMemory,
    features_into,
    previous_columns,
    previous_of,
    remember_into,
    state_columns,
)
from ml.rules import fault_bits

LATEST, EARLIER = 0, 1


class Tracked(NamedTuple):
    rows: np.ndarray  # the features of each state, in order (``FEATURES``)
    faults: np.ndarray  # each state's ``fault_bits``
    memories: dict[str, AircraftMemory]  # the memories that changed (to write back, once per aircraft)


@njit(cache=True)
def _same(a, b) -> bool:  # pragma: no cover - compiled
    for j in range(a.shape[0]):
        if a[j] != b[j] and (a[j] == a[j] or b[j] == b[j]):  # NaN (none) equals NaN
            return False
    return True


@njit(cache=True)
def _track(states, slots, memory, known, rows, faults, changed):  # pragma: no cover - compiled
    """In order: each state's features (``rows``) and faults, and its aircraft's ``memory`` (per slot: its
    latest and earlier good states, ``known`` if there are) after it; ``changed`` marks the slots written.

    A state seen again (the latest's times) is compared with the state before it, so it gets the same
    features every time, and changes nothing; so does one older than the latest."""
    none = np.full(N_PREVIOUS_COLUMNS, np.nan)
    new = np.empty(N_PREVIOUS_COLUMNS)
    for i in range(states.shape[0]):
        k, s = slots[i], states[i]
        latest = memory[k, LATEST]
        seen_again = known[k, LATEST] and s[S_CONTACT] == latest[P_CONTACT] and s[S_TIME] == latest[P_TIME]
        which = EARLIER if seen_again else LATEST
        features_into(s, known[k, which], memory[k, which] if known[k, which] else none, rows[i])
        faults[i] = fault_bits(s, rows[i])
        if faults[i]:  # a data fault is not remembered
            continue
        if not known[k, LATEST]:
            remember_into(s, False, none, latest)
            known[k, LATEST] = changed[k] = True
        elif not seen_again and s[S_CONTACT] >= latest[P_CONTACT]:
            remember_into(s, True, latest, new)
            if not _same(new, latest):
                memory[k, EARLIER, :] = latest
                memory[k, LATEST, :] = new
                known[k, EARLIER] = changed[k] = True


def track(states: Sequence, memories: Mapping[str, AircraftMemory | None]) -> Tracked:
    """The features and faults of ``states`` (StateVectors in stream order) given each aircraft's memory
    before them (``memories``, by icao24; missing or None: not seen yet), and the memories they changed."""
    slot_of = {icao24: k for k, icao24 in enumerate(dict.fromkeys(s.icao24 for s in states))}
    memory = np.full((len(slot_of), 2, N_PREVIOUS_COLUMNS), np.nan)
    known = np.zeros((len(slot_of), 2), dtype=np.bool_)
    for icao24, k in slot_of.items():
        held = memories.get(icao24)
        if held is not None:
            memory[k, LATEST], known[k, LATEST] = previous_columns(held.latest), True
            if held.earlier is not None:
                memory[k, EARLIER], known[k, EARLIER] = previous_columns(held.earlier), True
    columns = np.array([state_columns(s) for s in states], dtype=np.float64).reshape(len(states), N_STATE_COLUMNS)
    slots = np.array([slot_of[s.icao24] for s in states], dtype=np.int64)
    rows = np.empty((len(states), N_FEATURES), dtype=np.float64)
    faults = np.zeros(len(states), dtype=np.int64)
    changed = np.zeros(len(slot_of), dtype=np.bool_)
    _track(columns, slots, memory, known, rows, faults, changed)
    return Tracked(rows, faults, {
        icao24: AircraftMemory(previous_of(memory[k, LATEST]),
                               previous_of(memory[k, EARLIER]) if known[k, EARLIER] else None)
        for icao24, k in slot_of.items() if changed[k]})

