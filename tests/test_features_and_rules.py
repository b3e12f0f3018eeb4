"""Flight phase, features, rule flags and batch scoring: pure functions, no Kafka."""

import numpy as np
import pytest

from flights_app.records import StateVector
from ml import model as model_io
from ml.features import (
    FEATURES,
    AircraftMemory,
    PreviousState,
    feature_vector,
    previous_for,
    remember,
)
from ml.phase import PHASES, flight_phase
from ml.rules import remember_after, rule_flags
from ml.scoring import score_batch

T = 1_700_000_000  # a Tuesday, 22:13 UTC
F = {name: i for i, name in enumerate(FEATURES)}


def sv(icao="abc123", t=T, lat=50.0, lon=8.0, velocity=230.0, alt=10000.0, vr=0.0, track=90.0,
       on_ground=False, squawk="1000", time_position=None):
    return StateVector(icao24=icao, callsign="TST1", origin_country="X", time_position=t if time_position is None else time_position,
                       last_contact=t, longitude=lon, latitude=lat, baro_altitude=None if on_ground else alt,
                       on_ground=on_ground, velocity=velocity, true_track=track, vertical_rate=None if on_ground else vr,
                       sensors=None, geo_altitude=None, squawk=squawk, spi=False, position_source=0, category=None,
                       ingest_time=float(t), poll_id="p")


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


def test_first_state_of_an_aircraft_gets_neutral_deltas():
    f = feature_vector(sv(), None)
    assert f.shape == (len(FEATURES),)
    assert f[F["speed_change_mps"]] == 0 and f[F["altitude_change_m"]] == 0 and f[F["contact_gap_s"]] == 0
    assert f[F["implied_speed_mps"]] == 230.0
    assert (f[F["hour_utc"]], f[F["day_of_week"]]) == (22, 1)
    assert f[F["heading_sin"]] == pytest.approx(1.0) and f[F["heading_cos"]] == pytest.approx(0.0, abs=1e-12)


def test_deltas_against_the_previous_state():
    before = remember(sv(t=T, lon=8.0, velocity=200.0, alt=9000.0))
    f = feature_vector(sv(t=T + 10, lon=8.03, velocity=210.0, alt=9050.0), before)
    assert f[F["speed_change_mps"]] == 10.0 and f[F["altitude_change_m"]] == 50.0 and f[F["contact_gap_s"]] == 10.0
    # 0.03 degrees of longitude at 50N is about 2.14 km, in 10 s
    assert f[F["implied_speed_mps"]] == pytest.approx(214.5, abs=1.0)
    again = feature_vector(sv(t=T + 10, lon=8.03), remember(sv(t=T + 10, lon=8.03)))
    assert again[F["implied_speed_mps"]] == 230.0  # the same position again: nothing to infer


def test_rule_flags_each_say_why():
    before = remember(sv(t=T))
    assert rule_flags(sv(squawk="7700"), feature_vector(sv(squawk="7700"), None), False) == [
        "emergency squawk 7700 (general emergency)"]
    jumped = sv(t=T + 5, lon=10.0)
    assert rule_flags(jumped, feature_vector(jumped, before), True)[0].startswith("position jump")
    climbed = sv(t=T + 5, alt=14000.0)
    assert rule_flags(climbed, feature_vector(climbed, before), True)[0].startswith("altitude jump")
    dive = sv(vr=-80.0)
    assert rule_flags(dive, feature_vector(dive, None), False) == ["impossible vertical rate -80 m/s"]
    stale = sv(time_position=T - 300)
    assert rule_flags(stale, feature_vector(stale, None), False) == ["stale position: 300 s older than the last contact"]
    normal = sv(t=T + 5, lon=8.015)
    assert rule_flags(normal, feature_vector(normal, before), True) == []


def test_a_glitch_is_not_remembered_and_an_old_state_never_rewinds():
    memory = AircraftMemory(remember(sv(t=T)))
    jumped = sv(t=T + 5, lon=10.0)
    assert remember_after(jumped, memory, rule_flags(jumped, feature_vector(jumped, memory.latest), True)) is memory
    assert remember_after(sv(t=T - 100), memory, []) is memory
    newer = sv(t=T + 5, lon=8.01)
    assert remember_after(newer, memory, []) == AircraftMemory(remember(newer), memory.latest)
    assert remember_after(newer, None, []) == AircraftMemory(remember(newer))


def test_a_state_seen_again_gets_the_same_features():
    """OpenSky repeats snapshots and at-least-once delivery replays: the same state, the same features."""
    first, second = sv(t=T, lon=8.0, velocity=200.0), sv(t=T + 10, lon=8.03, velocity=210.0)
    memory = remember_after(first, None, [])
    features = feature_vector(second, previous_for(memory, second))
    memory = remember_after(second, memory, [])
    again = feature_vector(second, previous_for(memory, second))
    np.testing.assert_array_equal(again, features)
    assert remember_after(second, memory, []) is memory
    assert features[F["speed_change_mps"]] == 10.0


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.normal(230, 10, 3000), rng.normal(10000, 500, 3000)] +
                        [rng.normal(0, 1, 3000) for _ in range(len(FEATURES) - 2)])
    path = tmp_path_factory.mktemp("model") / "m.joblib"
    model_io.save(model_io.train(X, n_estimators=50), path, training_rows=3000, source="test", params={})
    return model_io.load(path)


def test_score_batch_gives_one_output_per_input_in_order(small_model):
    states = [sv(icao="aaaaaa", t=T), sv(icao="bbbbbb", t=T), sv(icao="aaaaaa", t=T + 10, lon=8.03)]
    scored, updated = score_batch(small_model, states, {"aaaaaa": None, "bbbbbb": None})
    assert [s.state for s in scored] == states
    # The second state of aaaaaa in the same batch uses the first as its previous state.
    assert scored[2].features["contact_gap_s"] == 10.0 and scored[0].features["contact_gap_s"] == 0.0
    assert set(updated) == {"aaaaaa", "bbbbbb"} and updated["aaaaaa"].latest.last_contact == T + 10
    assert updated["aaaaaa"].earlier.last_contact == T
    for s in scored:
        assert 0 < s.ml_anomaly_score <= 1 and s.model_version == small_model.version
        assert (s.anomaly_reason is not None) == s.ml_is_anomaly


def test_an_anomaly_is_explained_in_words(small_model):
    from ml.model import explain

    features = small_model.scorer.mean.copy()
    features[F["velocity_mps"]] = 1100.0
    assert explain(small_model.scorer, features).startswith("speed 1100 m/s far above typical (210.1..249.9 m/s")
    features[F["velocity_mps"]] = small_model.scorer.mean[F["velocity_mps"]]
    features[F["vertical_rate_mps"]] = -42.0
    assert explain(small_model.scorer, features).startswith("vertical rate -42 m/s far below typical")


def test_score_batch_flags_what_the_model_flags(small_model):
    # Far outside the training data in every feature at once: the forest isolates it at once.
    extreme = small_model.scorer.mean + 8 * small_model.scorer.scale
    assert small_model.scorer.anomaly_score(extreme)[0] > small_model.scorer.threshold
    state = sv(velocity=extreme[0], alt=extreme[1])
    (scored,), _ = score_batch(small_model, [state], {"abc123": None})
    expected = small_model.scorer.anomaly_score(feature_vector(state, None))[0]
    assert scored.ml_anomaly_score == expected
    assert scored.ml_is_anomaly == (expected > small_model.scorer.threshold)


def test_memory_round_trips_through_the_table_format():
    prev = remember(sv())
    assert PreviousState.from_dict(prev.as_dict()) == prev
    memory = AircraftMemory(remember(sv(t=T + 5)), prev)
    assert AircraftMemory.from_dict(memory.as_dict()) == memory
    assert AircraftMemory.from_dict(AircraftMemory(prev).as_dict()) == AircraftMemory(prev)
