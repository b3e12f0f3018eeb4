"""The benchmarks' input: simulated state vectors as the source agent publishes them.

States come from the fake OpenSky simulator (``n`` aircraft polled every
``poll_s`` seconds), validated by the app's own validator, so they are what a
real run carries. Known duplicates are whole polls sent twice (OpenSky repeats
snapshots), and the distinct count per (country, window) is computed here,
independently of the worker, to check its totals.
"""

from __future__ import annotations

import collections
import random
from dataclasses import dataclass

import orjson

from flights_app.decode import decode_state
from flights_app.records import StateVector, event_time_of
from ml.dataset import simulated_polls, valid_states

EPOCH = 1_790_000_000


def _identity(state: dict) -> tuple[str, str, int]:
    """What makes a state a duplicate for the worker: the same aircraft at the same event time."""
    return state["origin_country"], state["icao24"], event_time_of(state)


@dataclass
class Workload:
    states: list[dict]  # StateVector fields (without ingest_time), in send order
    repeated_polls: int  # states sent twice on purpose (whole polls)
    aircraft: int

    def __len__(self) -> int:
        return len(self.states)

    @property
    def duplicates(self) -> int:
        """States whose aircraft and event time came before: the repeated polls, and the simulator's own
        repeats (a position not updated between two polls keeps its time)."""
        return len(self.states) - len({_identity(s) for s in self.states})

    def distinct_per_window(self, window_s: int) -> dict[tuple[str, int], int]:
        """(country, window start) -> distinct (icao24, event time): what the worker must count."""
        seen = {_identity(s) for s in self.states}
        return dict(collections.Counter((c, int(t // window_s) * window_s) for c, _, t in seen))


def simulate(n_aircraft: int, polls: int, *, seed: int = 11, poll_s: float = 5.0,
             repeat_every: int = 0, epoch: float = EPOCH) -> Workload:
    """``polls`` polls of ``n_aircraft`` aircraft; with ``repeat_every`` k, every k-th poll is sent twice."""
    states, repeated = [], 0
    for k, poll in enumerate(simulated_polls(n_aircraft, seed=seed, minutes=polls * poll_s / 60,
                                             poll_s=poll_s, anomaly_rate=0.01, epoch=epoch,
                                             extended=True)):  # with categories, as the source asks
        rows = [s.asdict() for s in valid_states(poll)]
        for row in rows:
            row.pop("ingest_time", None)
        states += rows
        if repeat_every and k % repeat_every == repeat_every - 1:
            states += rows
            repeated += len(rows)
    return Workload(states, repeated, n_aircraft)


def shifted(state: dict, repeat: int, period_s: int = 3600) -> dict:
    """The state ``repeat`` periods of event time later (an hour by default): each pass over a
    workload is new traffic."""
    shift = repeat * period_s
    return {**state, "time_position": state["time_position"] and state["time_position"] + shift,
            "last_contact": state["last_contact"] + shift}


def encode(state: dict, ingest_time: float) -> bytes:
    """The record the source agent would publish, ingested at ``ingest_time`` (Unix seconds)."""
    return orjson.dumps({**state, "ingest_time": ingest_time})


def check_decodes(workload: Workload) -> None:
    """The records decode as the worker decodes them (a wrong workload would be rejected)."""
    for state in random.Random(0).sample(workload.states, min(20, len(workload))):
        decoded = decode_state(encode(state, 0.0), None, "bench")
        if not isinstance(decoded, StateVector):
            raise ValueError(f"the workload's state is rejected: {decoded.reason}: {decoded.detail}")
