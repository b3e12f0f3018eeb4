"""The window core against a brute-force oracle, in process, no broker (tests/window_sim.py models Kafka).

Generated cases: aircraft of a few countries and airlines climbing and descending through the altitude bands,
polled every 5 s with position times up to 4 s old (out of order within a poll), whole polls repeated
verbatim (OpenSky repeats snapshots), states of a poll arriving in batches of one to three polls, scoring and
group batches interleaved at random with watermark ticks and flushes, crashes mid-batch (a prefix of each
destination's sends delivered, the data directory kept or emptied) and partitions moving between two
workers. Then every source sends one last state far ahead (a sentinel), and the cluster drains.

The oracle: every distinct (icao24, event time) counted once in its window, in the group of each dimension
(a fixed dimension's group is the aircraft's, a per-state dimension's the state's own). What must hold:
every window the sentinels closed has a final record, and the newest record of every window equals the
oracle's figures; no record names a window or group the oracle does not have.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tables.dimensions import DIMENSIONS, Dimension, altitude_band
from tests.window_sim import Scored, Sim, State, route

SIZE_S, GRACE_S, EXPIRY_S, IDLE_S = 30, 25, 30, 10.0
POLL_S, AGE_MAX_S = 5, 4
PARTITIONS, WORKERS = 3, 2
COUNTRIES = ("France", "Spain", "Chad")
CALLSIGNS = ("AFR123", "IBE44", "N123AB", None)


def traffic(rng: random.Random, aircraft: int, polls: int) -> list[list[State]]:
    """``polls`` polls of ``aircraft`` aircraft (some polls repeat the one before verbatim)."""
    planes = []
    for i in range(aircraft):
        altitude = rng.choice([0.0, rng.uniform(0, 11_000)])
        planes.append({"icao24": f"{0xa00000 + i * 7919:06x}", "country": rng.choice(COUNTRIES),
                       "callsign": rng.choice(CALLSIGNS), "altitude": altitude,
                       "climb": rng.choice([-600.0, -150.0, 0.0, 150.0, 600.0]), "seen": rng.random()})
    start = 1_000_000 + rng.randrange(SIZE_S)
    out: list[list[State]] = []
    for k in range(polls):
        if out and rng.random() < 0.15:
            out.append(list(out[-1]))  # the same snapshot again
            continue
        poll_time = start + k * POLL_S
        poll = []
        for plane in planes:
            plane["altitude"] = min(12_500.0, max(0.0, plane["altitude"] + plane["climb"] * rng.random()))
            if rng.random() > plane["seen"] + 0.3:
                continue  # not heard this time
            on_ground = plane["altitude"] < 30
            baro = None if on_ground or rng.random() < 0.1 else round(plane["altitude"], 1)
            geo = None if on_ground or rng.random() < 0.2 else round(plane["altitude"] + 40, 1)
            poll.append(State(plane["icao24"], poll_time - rng.randint(0, AGE_MAX_S),
                              round(rng.uniform(0, 260), 2), baro, geo, on_ground,
                              rng.choice(["7700", "1200", None, "2000"]), plane["country"], plane["callsign"]))
        rng.shuffle(poll)
        out.append(poll)
    return out


def oracle(states: list[State], dimensions: tuple[Dimension, ...]) -> dict[tuple[str, str, int], dict]:
    """Brute force: each distinct state, counted in its window and the group it belongs to."""
    distinct: dict[tuple[str, int], State] = {}
    for state in states:
        distinct.setdefault((state.icao24, state.event_time), state)
    first: dict[tuple[str, int], State] = {}  # an aircraft's first state of each window (fixed groups)
    for state in sorted(distinct.values(), key=lambda s: s.event_time):
        first.setdefault((state.icao24, state.event_time // SIZE_S * SIZE_S), state)
    members: dict[tuple[str, str, int], list[State]] = defaultdict(list)
    for (icao24, t), state in distinct.items():
        start = t // SIZE_S * SIZE_S
        for dimension in dimensions:
            group = dimension.group_of(state if dimension.per_state else first[(icao24, start)])
            if group:
                members[(dimension.name, group, start)].append(state)
    return {window: figures(states) for window, states in members.items()}


def figures(states: list[State]) -> dict:
    velocities = [s.velocity for s in states]
    altitudes = [a for s in states if (a := s.baro_altitude if s.baro_altitude is not None else s.geo_altitude)
                 is not None]
    return {
        "events": len(states), "aircraft": len({s.icao24 for s in states}),
        "velocity_min": min(velocities), "velocity_mean": sum(velocities) / len(velocities),
        "velocity_max": max(velocities),
        "altitude_min": min(altitudes, default=None),
        "altitude_mean": sum(altitudes) / len(altitudes) if altitudes else None,
        "altitude_max": max(altitudes, default=None),
        "anomalies": sum(anomalous(s) for s in states), "on_ground": sum(s.on_ground for s in states),
        "emergencies": sum(s.squawk == "7700" for s in states), "late_events": 0,
    }


def anomalous(state: State) -> bool:
    return state.velocity > 200  # the model's verdict travels with the scored state; any rule will do


def differences(record: dict, expected: dict) -> list[str]:
    wrong = []
    for name, want in expected.items():
        got = record.get(name)
        same = (got is None and want is None) if got is None or want is None else math.isclose(got, want,
                                                                                               rel_tol=1e-9)
        if not same:
            wrong.append(f"{name}: {got} != {want}")
    return wrong


def sentinel_for(partition: int) -> str:
    return next(icao24 for i in range(4096) if route(icao24 := f"fe{i:04x}", PARTITIONS) == partition)


def climb(polls: int = 30) -> list[list[State]]:
    """One aircraft from the ground to 12,000 m and back, one state per 5 s poll: every band, in and out."""
    out = []
    for k in range(polls):
        altitude = 12_000 * (1 - abs(2 * k / (polls - 1) - 1))
        out.append([State("4ca123", 1_000_000 + 5 * k, 60 + 7.0 * k, None if k == 0 else altitude, None, k == 0,
                          None, "Ireland", "EIN1")])
    return out


def run_case(seed: int, aircraft: int, polls: int, steps: int, crashes: bool, moves: bool,
             dimensions: tuple[Dimension, ...] = DIMENSIONS, counted_as: tuple[Dimension, ...] | None = None,
             given_traffic: list[list[State]] | None = None):
    """One generated case: the sim's records, the oracle, the windows that must be closed, where the
    sentinels' windows start."""
    rng = random.Random(seed)
    sim = Sim(dimensions, PARTITIONS, WORKERS, SIZE_S, GRACE_S, EXPIRY_S, IDLE_S,
              chunk_states=rng.choice([2, 5, 50]), max_partials=rng.choice([1, 3, 1000]))
    states = []
    for poll in given_traffic or traffic(rng, aircraft, polls):
        states += poll
        by_partition = defaultdict(list)
        for state in poll:
            by_partition[route(state.icao24, PARTITIONS)].append(Scored(state, anomalous(state)))
        for p, items in by_partition.items():
            sim.raw[p].append(items)
    for _ in range(steps):
        action = rng.random()
        partition = rng.randrange(PARTITIONS)
        crash = None
        if crashes and rng.random() < 0.08:
            crash = {("aircraft", partition): rng.randint(0, 6), ("groups", partition): rng.randint(0, 3),
                     ("published", 0): rng.randint(0, 2), "keep_data": rng.random() < 0.5,
                     **{("partials", q): rng.randint(0, 2) for q in range(PARTITIONS)}}
        if action < 0.4:
            sim.score(partition, rng.randint(1, 3), crash)
        elif action < 0.7:
            sim.group(partition, rng.randint(1, 6), crash)
        elif action < 0.8:
            sim.tick(rng.choice(sim.workers))
        elif action < 0.9:
            sim.flush(rng.choice(sim.workers))
        elif action < 0.95 and moves:
            sim.move(partition, rng.randrange(WORKERS))
        else:
            sim.now += rng.choice([0.5, 1.0, 3.0, IDLE_S + 1])
    # Every source moves far ahead: every window of the traffic closes (and expires).
    end = max((s.event_time for s in states), default=1_000_000) + SIZE_S + GRACE_S + EXPIRY_S + SIZE_S
    for p in range(PARTITIONS):
        sentinel = State(sentinel_for(p), end, 0.0, None, None, True, None, "Sentinel", None)
        sim.raw[p].append([Scored(sentinel, False)])
    for _ in range(40):
        for p in range(PARTITIONS):
            while sim.score(p, 3):
                pass
        sim.now += 1.0
        for worker in sim.workers:
            sim.tick(worker)
        for p in range(PARTITIONS):
            while sim.group(p, 6):
                pass
        for worker in sim.workers:
            sim.flush(worker)
    expected = oracle(states, counted_as or dimensions)
    closed = {w for w in expected if w[2] + SIZE_S + GRACE_S <= end}
    return sim.published, expected, closed, end // SIZE_S * SIZE_S


def check(published: list[dict], expected: dict, closed: set, sentinels_from: int) -> list[str]:
    """What is wrong with the records against the oracle (empty: nothing)."""
    newest, finals = {}, set()
    for record in published:
        window = (record["dimension"], record["name"], record["window_start"])
        if window[2] >= sentinels_from:
            continue  # the sentinels' own windows
        newest[window] = record
        if record["final"]:
            finals.add(window)
    wrong = [f"{w}: no final record" for w in sorted(closed - finals)]
    wrong += [f"{w}: published, but the oracle has no such window" for w in sorted(set(newest) - set(expected))]
    for window in sorted(closed):
        if window in newest:
            wrong += [f"{window}: {d}" for d in differences(newest[window], expected[window])]
    return wrong


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), aircraft=st.integers(1, 6), polls=st.integers(1, 40),
       steps=st.integers(0, 120), crashes=st.booleans(), moves=st.booleans())
def test_every_closed_window_s_newest_record_equals_the_oracle_through_crashes_and_moves(
        seed, aircraft, polls, steps, crashes, moves):
    published, expected, closed, sentinels = run_case(seed, aircraft, polls, steps, crashes, moves)
    wrong = check(published, expected, closed, sentinels)
    assert not wrong, "\n".join(wrong[:20])


def test_a_climbing_aircraft_counts_in_each_altitude_band_it_flew_through():
    published, expected, closed, sentinels = run_case(7, 0, 0, 0, False, False, given_traffic=climb())
    assert not check(published, expected, closed, sentinels)
    published = [r for r in published if r["window_start"] < sentinels]
    newest = {(r["name"], r["window_start"]): r["events"] for r in published if r["dimension"] == "altitude"}
    assert {name for name, _ in newest} == {"on ground", "below 3000 m", "3000-6000 m", "6000-9000 m",
                                            "above 9000 m"}
    # Each window's states spread over the bands it climbed through, none twice, none lost.
    by_window = defaultdict(int)
    for (_, start), events in newest.items():
        by_window[start] += events
    country = {r["window_start"]: r["events"] for r in published if r["dimension"] == "country"}
    assert by_window == country and sum(country.values()) == 30


def test_the_oracle_catches_a_per_state_dimension_counted_as_fixed_per_aircraft():
    """The deliberately broken variant: the altitude band declared fixed per aircraft (the first state of an
    aircraft's window decides its band for the whole window, as every dimension was before per-state ones)."""
    fixed = tuple(Dimension(d.name, d.plural, d.group_of) for d in DIMENSIONS)
    published, expected, closed, sentinels = run_case(7, 0, 0, 0, False, False, dimensions=fixed,
                                                      counted_as=DIMENSIONS, given_traffic=climb())
    wrong = check(published, expected, closed, sentinels)
    assert any(w.startswith("('altitude'") for w in wrong)
    assert not any(w.startswith("('country'") for w in wrong)  # the fixed dimensions stay right


@pytest.mark.parametrize("altitude, on_ground, band", [
    (None, True, "on ground"), (2999.9, False, "below 3000 m"), (3000.0, False, "3000-6000 m"),
    (8999.0, False, "6000-9000 m"), (9000.0, False, "above 9000 m"), (None, False, None),
])
def test_the_altitude_band_of_a_state(altitude, on_ground, band):
    state = State("abcdef", 0, 100.0, altitude, None, on_ground, None, "France", None)
    assert altitude_band(state) == band
    if altitude is not None:  # the geometric altitude when the barometric one is missing
        assert altitude_band(State("abcdef", 0, 100.0, None, altitude, on_ground, None, "France", None)) == band


def test_the_oracle_catches_a_core_that_does_not_send_a_replayed_state_s_partial_again(monkeypatch):
    """The deliberately broken variant of the core: a batch whose states were all counted already (a
    replay after a crash) sends no partial, trusting the one sent before the crash to have arrived. After
    a crash that delivered the aircraft's entry but not its partial, the state is lost from the group."""
    from tables import window_core
    from tests import window_sim

    class NoResend(window_core.AircraftWindows):
        def _messages(self, partition, touched, stamp, now, counts):
            fresh = {key: count for key, count in touched.items()
                     if count.mask != window_core.seen_mask(count.window, count.start)}
            return super()._messages(partition, fresh, stamp, now, counts)

    monkeypatch.setattr(window_sim, "AircraftWindows", NoResend)
    rng = random.Random(1)
    caught = 0
    for _ in range(100):
        seed, aircraft, polls, steps = rng.randrange(2**32), rng.randint(1, 6), rng.randint(1, 40), rng.randint(0, 120)
        published, expected, closed, sentinels = run_case(seed, aircraft, polls, steps, crashes=True, moves=True)
        caught += bool(check(published, expected, closed, sentinels))
    assert caught >= 5, caught  # 22 of these 100 cases, here


def test_an_aircraft_whose_windows_expired_keeps_its_track_until_the_track_would_end_anyway():
    """Windows of 60 s kept 10 s past their grace: the window expires long before the track's gap
    (ml.features.NEW_TRACK_GAP_S, 300 s) is over. The aircraft entry (its model memory, last state and
    windows) is forgotten only once both have passed."""
    from ml.features import NEW_TRACK_GAP_S
    from tables.clock import WindowClock
    from tables.window_core import aircraft_expired

    clock = WindowClock(size_s=60, grace_s=5, expiry_s=10, partitions=1, idle_s=10)
    assert not aircraft_expired(clock, 0, 0, NEW_TRACK_GAP_S)  # no watermark yet: nothing is judged
    clock.sources[0] = 60 + 5 + 10 + 1
    assert clock.expired(0, clock.sources[0])
    assert not aircraft_expired(clock, 0, 0, NEW_TRACK_GAP_S)  # its window expired, its track goes on
    clock.sources[0] = 60 + NEW_TRACK_GAP_S - 1
    assert not aircraft_expired(clock, 0, 0, NEW_TRACK_GAP_S)
    clock.sources[0] = 60 + NEW_TRACK_GAP_S
    assert aircraft_expired(clock, 0, 0, NEW_TRACK_GAP_S)
    # With the default expiry (an hour) the windows are the later of the two, as before.
    hourly = WindowClock(size_s=600, grace_s=30, expiry_s=3600, partitions=1, idle_s=10)
    hourly.sources[0] = 600 + NEW_TRACK_GAP_S + 1
    assert not aircraft_expired(hourly, 0, 0, NEW_TRACK_GAP_S)
    hourly.sources[0] = 600 + 30 + 3600 + 1
    assert aircraft_expired(hourly, 0, 0, NEW_TRACK_GAP_S)
