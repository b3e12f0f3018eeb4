"""Flight phase, features, rule flags and batch scoring: pure functions, no Kafka."""

import numpy as np
import pytest

from flights_app.records import StateVector
from ml import dataset
from ml import model as model_io
from ml.features import (
    FEATURES,
    MODEL_FEATURES,
    NEW_TRACK_GAP_S,
    AircraftMemory,
    PreviousState,
    feature_vector,
    remember,
)
from ml.phase import PHASES, flight_phase
from ml.rules import Flags, flags_of, rule_flags
from ml.scoring import judge, pages, score_batch
from ml.track import track

T = 1_700_000_000  # a Tuesday, 22:13 UTC
F = {name: i for i, name in enumerate(FEATURES)}


def sv(icao="abc123", t=T, lat=50.0, lon=8.0, velocity=230.0, alt=10000.0, vr=0.0, track=90.0,
       on_ground=False, squawk="1000", time_position=None, geo=None):
    return StateVector(icao24=icao, callsign="TST1", origin_country="X",
                       time_position=t if time_position is None else time_position, last_contact=t, longitude=lon,
                       latitude=lat, baro_altitude=None if on_ground else alt, on_ground=on_ground, velocity=velocity,
                       true_track=track, vertical_rate=None if on_ground else vr, sensors=None, geo_altitude=geo,
                       squawk=squawk, spi=False, position_source=0, category=None, ingest_time=float(t), poll_id="p")


#: 230 m/s due east at 50N is this many degrees of longitude a second.
EAST_DEG_S = 230.0 / (111_195.0 * np.cos(np.radians(50.0)))


def east(seconds: float, **kw) -> StateVector:
    """The test aircraft ``seconds`` after T, flying 230 m/s due east as it says."""
    return sv(**{"t": T + seconds, "lon": 8.0 + EAST_DEG_S * seconds, **kw})


def features_after(*states):
    """The features and flags of the last state, each earlier one remembered as the scoring agent would."""
    tracked = track(states, {})
    return tracked.rows[-1], flags_of(states[-1], tracked.rows[-1], tracked.faults[-1])


@pytest.mark.parametrize("args, phase", [
    ((True, None, None, 0.0), "ground"),
    ((True, None, None, 8.0), "ground"),
    ((True, None, None, 70.0), "takeoff"),
    ((True, None, -3.0, 60.0), "landing"),
    ((False, 300.0, 8.0, 90.0), "takeoff"),
    ((False, 300.0, -4.0, 80.0), "landing"),
    ((False, 4000.0, 10.0, 180.0), "climb"),
    ((False, 11000.0, 0.3, 240.0), "cruise"),
    ((False, 5000.0, -0.5, 200.0), "level"),
    ((False, 9000.0, -8.0, 230.0), "descent"),
    ((False, 2000.0, -6.0, 120.0), "approach"),
    ((False, None, None, 200.0), "level"),
])
def test_flight_phase(args, phase):
    assert flight_phase(*args) == phase
    assert phase in PHASES


def test_the_first_state_of_a_track_has_no_residuals_and_says_so():
    f = feature_vector(sv(), None)
    assert f.shape == (len(FEATURES),)
    assert f[F["new_track"]] == 1 and f[F["implied_speed_mps"]] == 230.0
    assert all(f[F[name]] == 0 for name in MODEL_FEATURES)
    assert (f[F["hour_utc"]], f[F["day_of_week"]]) == (22, 1)
    far_later = feature_vector(sv(t=T + NEW_TRACK_GAP_S + 5, lon=9.0), remember(sv()))
    assert far_later[F["new_track"]] == 1 and far_later[F["innovation"]] == 0


def test_a_consistent_track_has_small_residuals():
    f, flags = features_after(east(0), east(5), east(10))
    assert f[F["new_track"]] == 0 and f[F["position_gap_s"]] == 5
    assert f[F["implied_speed_mps"]] == pytest.approx(230.0, rel=0.01)
    assert abs(f[F["speed_log_ratio"]]) < 0.01 and abs(f[F["track_residual_deg"]]) < 1
    assert f[F["prediction_error_m"]] < 20 and f[F["innovation"]] < 0.1
    assert flags == Flags([], [])


def test_each_residual_measures_its_own_inconsistency():
    spike, flags = features_after(east(0), east(5, velocity=700.0))
    assert spike[F["speed_log_ratio"]] == pytest.approx(np.log(730 / 260), abs=0.01)
    assert spike[F["speed_accel_mps2"]] == pytest.approx(94.0)
    assert flags.faults == ["speed spike: reported 700 m/s but moved at 230 m/s over 5 s"]
    # A climb its vertical rate explains leaves no residual; the same change without it does.
    climb, flags = features_after(east(0, vr=10.0), east(5, vr=10.0, alt=10050.0))
    assert climb[F["climb_rate_mps"]] == 10.0 and climb[F["altitude_residual_mps"]] == 0 and flags.faults == []
    jump, flags = features_after(east(0), east(5, alt=13000.0))
    assert jump[F["altitude_residual_mps"]] == 600.0
    assert flags.faults == ["altitude jump: +3000 m in 5 s more than its vertical rate explains"]
    # 2 km north of where the reported velocity put it.
    sideways, _ = features_after(east(0), east(5, lat=50.018))
    assert sideways[F["prediction_error_m"]] == pytest.approx(2000, rel=0.02) and sideways[F["innovation"]] > 5
    # it flew 1.15 km east and 2 km north (a bearing of 30 degrees) and reports due east
    assert sideways[F["track_residual_deg"]] == pytest.approx(60, abs=1)
    turn, _ = features_after(east(0), east(5, track=110.0))
    assert turn[F["turn_rate_dps"]] == 4.0
    stale, flags = features_after(east(0), sv(t=T + 5, time_position=T - 295))
    assert stale[F["position_age_s"]] == 300 and flags.faults == ["stale position: 300 s older than the last contact"]


def test_barometric_minus_geometric_altitude_is_judged_against_the_aircrafts_own_running_median():
    states = [east(5 * k, geo=10000.0 - 120.0) for k in range(6)]  # this aircraft's baro reads 120 m above geo
    f, _ = features_after(*states)
    assert f[F["baro_geo_residual_m"]] == 0
    f, _ = features_after(*states, east(30, alt=10000.0, geo=10000.0 - 800.0))
    assert f[F["baro_geo_residual_m"]] == 680.0
    first = remember(states[0])
    assert first.baro_geo_m == 120.0
    # The median moves at most 10 m a state, so one bad reading barely moves it.
    assert remember(east(5, geo=10000.0 - 800.0), first).baro_geo_m == 130.0


def test_rules_tell_alerts_from_data_faults_and_each_says_why():
    assert rule_flags(sv(squawk="7700"), feature_vector(sv(squawk="7700"), None)) == Flags(
        ["emergency squawk 7700 (general emergency)"], [])
    _, jump = features_after(east(0), east(5, lon=10.0))
    assert jump.alerts == [] and jump.faults[0].startswith("position jump: moved at ")
    _, frozen = features_after(east(0), sv(t=T + 5))  # time moves on, the position does not
    assert frozen.faults == ["frozen position: reported 230 m/s but moved 0 m in 5 s"]
    _, dive = features_after(east(0), east(5, vr=-80.0))
    assert dive.faults == ["impossible vertical rate: reported -80 m/s, altitude changed +0 m/s"]


def test_a_steep_climb_the_altitude_follows_is_no_fault():
    """A zero-g parabola really climbs at 100 m/s: only a vertical rate the altitude contradicts is a fault."""
    _, flags = features_after(east(0, vr=100.0), east(5, vr=100.0, alt=10500.0))
    assert flags == Flags([], [])


def test_a_glitch_is_not_remembered_so_its_return_is_not_a_second_fault():
    memory = AircraftMemory(remember(east(0)))
    jumped = east(5, lon=10.0)
    glitch = track([jumped], {jumped.icao24: memory})
    assert flags_of(jumped, glitch.rows[0], glitch.faults[0]).faults and glitch.memories == {}
    _, back = features_after(east(0), jumped, east(10))
    assert back == Flags([], [])
    assert track([sv(t=T - 100)], {"abc123": memory}).memories == {}  # older than the latest: nothing changes
    newer = east(5)
    assert track([newer], {newer.icao24: memory}).memories == {
        newer.icao24: AircraftMemory(remember(newer, memory.latest), memory.latest)}
    assert track([newer], {}).memories == {newer.icao24: AircraftMemory(remember(newer))}


def test_a_state_seen_again_gets_the_same_features():
    """OpenSky repeats snapshots and at-least-once delivery replays: the same state, the same features."""
    first, second = east(0), east(10, velocity=240.0)
    once = track([first, second], {})
    again = track([second], {second.icao24: once.memories[second.icao24]})
    np.testing.assert_array_equal(again.rows[0], once.rows[1])
    assert again.memories == {}  # and it changes nothing
    assert once.rows[1][F["speed_accel_mps2"]] == 1.0
    np.testing.assert_array_equal(track([first, second, second], {}).rows[2], once.rows[1])


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """Trained and calibrated on clean simulated traffic, as `flights-app train` does, smaller."""
    train = dataset.clean_features(dataset.feature_rows(dataset.simulated_polls(80, seed=1, minutes=20,
                                                                                anomaly_rate=0)))
    held_out = dataset.clean_features(dataset.feature_rows(dataset.simulated_polls(40, seed=3, minutes=10,
                                                                                   anomaly_rate=0)))
    pipeline, scale = model_io.train(train, n_estimators=100)
    path = tmp_path_factory.mktemp("model") / "m.joblib"
    model_io.save(pipeline, path, scale=scale, calibration=model_io.calibrate(pipeline, scale, held_out, 0.01),
                  training_rows=len(train), source="test", params={})
    return model_io.load(path)


def test_score_batch_gives_one_output_per_input_in_order(small_model):
    states = [sv(icao="aaaaaa", t=T), sv(icao="bbbbbb", t=T), sv(icao="aaaaaa", t=T + 10, lon=8.0 + 10 * EAST_DEG_S)]
    scored, updated = score_batch(small_model, states, {"aaaaaa": None, "bbbbbb": None})
    assert [s.state for s in scored] == states
    # The second state of aaaaaa in the same batch uses the first as its previous state.
    assert scored[2].features["position_gap_s"] == 10.0 and scored[0].features["new_track"] == 1.0
    assert set(updated) == {"aaaaaa", "bbbbbb"} and updated["aaaaaa"].latest.last_contact == T + 10
    assert updated["aaaaaa"].earlier.last_contact == T
    for s in scored:
        assert 0 < s.ml_anomaly_score <= 1 and s.model_version == small_model.version
        assert (s.anomaly_reason is not None) == s.ml_is_anomaly


def test_the_model_flags_a_speed_spike_and_says_why_in_numbers(small_model):
    (_, spike), _ = score_batch(small_model, [east(0), east(5, velocity=700.0)], {"abc123": None})
    assert spike.ml_is_anomaly and spike.ml_anomaly_score > small_model.threshold
    assert spike.anomaly_reason.startswith("speed changing at +94.0 m/s^2 over 5 s (")
    # The report contradicts itself: a data fault, never an alert.
    assert spike.data_faults[0].startswith("speed spike: reported 700 m/s")
    assert not pages(spike.alerts, spike.data_faults, True, 1.0, small_model.alert_threshold)
    # An altitude that jumps 3 km the vertical rate does not explain: the model calls it a data fault too.
    (_, jump), _ = score_batch(small_model, [east(0), east(5, alt=13000.0)], {"abc123": None})
    assert jump.ml_is_anomaly and jump.data_faults[-1].startswith(
        "inconsistent report (model): altitude changed +600.0 m/s over 5 s against a reported vertical rate of +0.0")


def test_a_flight_anomaly_is_no_data_fault_and_pages_above_the_alert_threshold(small_model):
    states = [east(0), east(5, track=90.0 + 5 * 20.0)]  # turning 20 degrees a second, its positions agree
    f, flags = features_after(*states)
    verdict = judge(small_model, f, flags, 0.99)
    assert verdict.is_anomaly and verdict.faults == [] and verdict.reason.startswith("turning 20.0 deg/s over 5 s")
    assert pages([], verdict.faults, True, small_model.alert_threshold, small_model.alert_threshold)
    assert not pages([], verdict.faults, True, small_model.alert_threshold - 1e-6, small_model.alert_threshold)
    assert not judge(small_model, f, flags, small_model.threshold).is_anomaly  # at the threshold is not above it
    assert pages(["emergency squawk 7700 (general emergency)"], [], False, 0.0, small_model.alert_threshold)


def test_memory_round_trips_through_the_table_format_and_reads_entries_older_than_its_fields():
    prev = remember(sv(geo=9900.0))
    assert PreviousState.from_dict(prev.as_dict()) == prev
    memory = AircraftMemory(remember(sv(t=T + 5)), prev)
    assert AircraftMemory.from_dict(memory.as_dict()) == memory
    assert AircraftMemory.from_dict(AircraftMemory(prev).as_dict()) == AircraftMemory(prev)
    old = {k: v for k, v in prev.as_dict().items() if k not in ("track", "vertical_rate", "on_ground", "baro_geo_m")}
    assert PreviousState.from_dict(old) == PreviousState(T, T, 50.0, 8.0, 230.0, 10000.0)
