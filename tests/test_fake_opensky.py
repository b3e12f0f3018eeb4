"""The fake OpenSky server's sources: the simulator and recorded replays."""

import collections

import pytest

from flights_app.fake_opensky.recordings import RecordingError, load_recording
from flights_app.fake_opensky.server import ReplaySource
from flights_app.fake_opensky.simulator import ANOMALY_KINDS, Simulator
from flights_app.records import StateVector
from flights_app.validation import validate_state

EPOCH = 1_800_000_000


def test_same_seed_same_traffic_and_other_seed_other_traffic():
    a = Simulator(30, seed=5, epoch=EPOCH).states_at(EPOCH)
    b = Simulator(30, seed=5, epoch=EPOCH).states_at(EPOCH)
    c = Simulator(30, seed=6, epoch=EPOCH).states_at(EPOCH)
    assert a == b and a[0] != c[0]


def test_every_simulated_aircraft_has_its_own_address():
    aircraft = Simulator(40_000, seed=11, epoch=EPOCH).aircraft
    addresses = [a.icao24 for a in aircraft]
    assert len(set(addresses)) == 40_000
    assert all(0x100000 <= int(x, 16) <= 0xFFFFFF and len(x) == 6 for x in addresses)


def test_simulated_states_are_valid_and_show_every_phase_of_flight():
    sim = Simulator(300, seed=1, epoch=EPOCH, anomaly_rate=0)
    rows, labels = sim.states_at(EPOCH)
    assert len(rows) == 300 and labels == []
    states = [validate_state(r, EPOCH, ingest_time=0, poll_id="x") for r in rows]
    assert all(isinstance(s, StateVector) for s in states), [s for s in states if not isinstance(s, StateVector)][:3]
    on_ground = [s for s in states if s.on_ground]
    airborne = [s for s in states if not s.on_ground]
    climbing = [s for s in airborne if s.vertical_rate > 3]
    descending = [s for s in airborne if s.vertical_rate < -3]
    cruising = [s for s in airborne if abs(s.vertical_rate) < 1 and s.baro_altitude > 9000]
    assert on_ground and climbing and descending and cruising
    assert all(150 <= s.velocity <= 260 for s in cruising)
    assert len({s.origin_country for s in states}) > 10


def test_aircraft_move_plausibly_between_seconds():
    sim = Simulator(50, seed=2, epoch=EPOCH, anomaly_rate=0)
    from flights_app.geo import haversine_m

    before = {r[0]: r for r in sim.states_at(EPOCH)[0]}
    after = {r[0]: r for r in sim.states_at(EPOCH + 10)[0]}
    for icao, row in after.items():
        old = before[icao]
        if row[8] or old[8]:
            continue
        dt = row[3] - old[3]
        implied = haversine_m(old[6], old[5], row[6], row[5]) / dt
        assert implied < 320, (icao, implied)


def test_anomalies_are_injected_at_the_rate_and_labelled_with_their_kind():
    sim = Simulator(200, seed=3, epoch=EPOCH, anomaly_rate=0.05)
    labels = []
    for t in range(EPOCH, EPOCH + 100):
        labels += sim.states_at(t)[1]
    kinds = collections.Counter(lb.kind for lb in labels)
    assert set(kinds) == set(ANOMALY_KINDS)
    airborne_states = 100 * sum(1 for r in sim.states_at(EPOCH)[0] if not r[8])
    assert 0.03 < len(labels) / airborne_states < 0.07


def test_injected_anomalies_really_change_the_state():
    clean = Simulator(200, seed=4, epoch=EPOCH, anomaly_rate=0)
    dirty = Simulator(200, seed=4, epoch=EPOCH, anomaly_rate=0.2)
    for t in range(EPOCH, EPOCH + 5):
        clean_rows = {r[0]: r for r in clean.states_at(t)[0]}
        rows, labels = dirty.states_at(t)
        by_icao = {r[0]: r for r in rows}
        for label in labels:
            row, ref = by_icao[label.icao24], clean_rows[label.icao24]
            assert label.last_contact == row[4]
            changed = {
                "speed_spike": row[9] > 2 * ref[9],
                "altitude_jump": abs(row[7] - ref[7]) >= 2999,
                "position_jump": abs(row[6] - ref[6]) >= 0.99,
                "emergency_squawk": row[14] in ("7500", "7600", "7700"),
                "frozen_position": row[4] - row[3] >= 120,
                "impossible_vertical_rate": abs(row[11]) >= 60,
            }[label.kind]
            assert changed, (label, row, ref)


def test_recordings_load_in_natural_order(tmp_path):
    for i in (10, 2, 1):
        (tmp_path / f"data-{i}.json").write_text(f'{{"time": {100 + i}, "states": []}}')
    assert [p.time for p in load_recording(tmp_path)] == [101, 102, 110]


def test_a_bad_recording_is_refused_with_a_reason(tmp_path):
    with pytest.raises(RecordingError, match="no such file"):
        load_recording(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(RecordingError, match="not a /states/all response"):
        load_recording(tmp_path / "bad.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordingError, match="holds no"):
        load_recording(tmp_path / "empty")


@pytest.mark.recordings
def test_the_shared_recordings_load_as_documented(shared_data):
    dulles = load_recording(shared_data / "opensky_dulles_2023-03-14_450polls.zip")
    assert len(dulles) == 450 and sum(len(p.states or []) for p in dulles) == 4237
    assert len({p.time for p in dulles}) == 337
    (snapshot,) = load_recording(shared_data / "opensky_global_snapshot_2021-10-17.json.gz")
    assert snapshot.time == 1634471390 and len(snapshot.states) == 5485


def test_replay_by_request_serves_each_poll_once_then_null(tmp_path):
    from flights_app.fake_opensky.recordings import RecordedPoll

    polls = [RecordedPoll(str(i), 100 + i,
                          [["abcdef"] + [None] * 2 + [100 + i, 100 + i] + [None] * 12]) for i in range(3)]
    replay = ReplaySource(polls, pace="request")
    assert [replay.response(None)[0] for _ in range(3)] == [100, 101, 102]
    assert replay.response(None)[1] is None and replay.exhausted
    looping = ReplaySource(polls, pace="request", loop=True, shift_to_present=True, clock=lambda: 1000.0)
    times = [looping.response(None)[0] for _ in range(7)]
    assert times == sorted(times) and len(set(times)) == 7 and times[0] == 1000


def test_a_replay_says_how_far_it_has_got_how_fast_and_how_long_it_still_takes():
    from flights_app.cli import replay_progress_line
    from flights_app.fake_opensky.recordings import RecordedPoll

    clock = [1000.0]
    polls = [RecordedPoll(str(i), 100 + 10 * i, [["abcdef"] + [None] * 16] * 500) for i in range(4)]  # 500 states
    replay = ReplaySource(polls, pace="request", loop=True, clock=lambda: clock[0])
    assert replay.progress()["served"] == 0 and replay_progress_line(replay.progress()) is None
    for _ in range(3):
        replay.response(None)
        clock[0] += 2.0  # a poll every 2 s
    assert replay.progress() == {"polls": 4, "served": 3, "loop": 1, "finished": False, "states": 1500,
                                 "elapsed_s": 6.0, "time_left_s": 2.0}
    assert replay_progress_line(replay.progress()) == "replay: poll 3 of 4 (75%), 250 states/s, about 2 s left"
    for _ in range(3):
        replay.response(None)
        clock[0] += 2.0
    assert replay_progress_line(replay.progress()) == (
        "replay: poll 2 of 4 (50%), 250 states/s, about 4 s left (pass 2 over the recording)")
    # At the recorded cadence (10 s between polls), twice as fast: the time left follows the recording.
    paced = ReplaySource([RecordedPoll(str(i), 100 + 10 * i, []) for i in range(400)], pace="clock", speed=2.0,
                         clock=lambda: clock[0])
    paced.response(None)
    assert paced.progress()["time_left_s"] == 399 * 5.0
    assert "about 33 min left" in replay_progress_line(paced.progress())
    once = ReplaySource(polls, pace="request")
    for _ in range(5):
        once.response(None)
    assert replay_progress_line(once.progress()) == "replay: all 4 polls served; the recording is finished"


def test_the_clock_pace_counts_from_the_first_request():
    """A replay at the clock's pace starts when its client first asks, however late it comes (the chaos
    soak starts its workers before they poll: no poll of the recording passes unseen)."""
    from flights_app.fake_opensky.recordings import RecordedPoll

    clock = [1000.0]
    replay = ReplaySource([RecordedPoll(str(i), 100 + 10 * i, []) for i in range(50)], pace="clock", speed=2.0,
                          clock=lambda: clock[0])
    clock[0] += 300.0  # five minutes before the first request
    assert replay.response(None)[0] == 100
    clock[0] += 4.9
    assert replay.response(None)[0] == 100
    clock[0] += 0.2  # 5.1 s after the first request, at twice the recorded 10 s cadence
    assert replay.response(None)[0] == 110
    assert replay.response(150)[0] == 150  # `time` asks the recording, whatever the pace


def test_progress_is_reported_often_on_a_terminal_and_once_a_minute_in_a_log():
    import io

    from flights_app.cli import ProgressReporter

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock = [0.0]
    lines = iter(f"line {i}" for i in range(1000))
    for stream, every in ((Terminal(), 15), (io.StringIO(), 60)):
        reporter = ProgressReporter(lambda: next(lines), "x: ", stream=stream, clock=lambda: clock[0])
        for _ in range(240):  # four minutes, ticked every second
            clock[0] += 1.0
            reporter.tick()
        assert len(stream.getvalue().splitlines()) == 240 // every, every
        assert stream.getvalue().startswith("x: line ")
    same = ProgressReporter(lambda: "no change", "", stream=io.StringIO(), clock=lambda: clock[0])
    for _ in range(300):
        clock[0] += 1.0
        same.tick()
    assert same.stream.getvalue() == "no change\n"  # a line that did not change is not repeated


def test_a_past_time_gives_the_newest_snapshot_at_or_before_it_even_when_the_recording_is_out_of_order():
    from flights_app.fake_opensky.recordings import RecordedPoll

    polls = [RecordedPoll(f"p{i}", t, [[f"a{i}"]]) for i, t in enumerate([10, 14, 12, 14])]  # as real recordings are
    replay = ReplaySource(polls, pace="request")
    assert [replay.response(t)[1][0][0] for t in (11, 12, 13, 14, 99)] == ["a0", "a2", "a2", "a3", "a3"]
    assert replay.response(5)[1][0][0] == "a0"  # before the recording: its first snapshot
