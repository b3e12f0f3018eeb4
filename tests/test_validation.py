import json

from hypothesis import given, settings
from hypothesis import strategies as st

from flights_app.opensky.parse import ResponseFormatError, parse_states_response
from flights_app.records import InvalidState, StateVector
from flights_app.validation import clean_callsign, validate_state

T = 1678803647
# A real row from the Dulles recording (2023-03-14).
AIRBORNE = ["a65527", "NKS2003 ", "United States", T, T, -77.3974, 38.8778, 7010.4, False,
            187.84, 208.46, 0, None, 6659.88, "0260", False, 0]
ON_GROUND_NO_ALTITUDE = ["a55a0c", "LXJ444  ", "United States", T - 444, T - 63, -77.4411, 38.9536,
                         None, True, 0, 2.81, None, None, None, "1714", False, 0]


def check(row, response_time=T):
    return validate_state(row, response_time, ingest_time=123.0, poll_id="p-1")


def with_field(index, value, row=AIRBORNE):
    row = list(row)
    row[index] = value
    return row


def test_a_real_airborne_row_becomes_a_state_vector():
    state = check(AIRBORNE)
    assert isinstance(state, StateVector)
    assert state.icao24 == "a65527" and state.callsign == "NKS2003"
    assert state.velocity == 187.84 and state.baro_altitude == 7010.4 and state.squawk == "0260"
    assert state.category is None and state.poll_id == "p-1" and state.event_time == T


def test_an_aircraft_on_the_ground_may_have_no_altitude():
    assert isinstance(check(ON_GROUND_NO_ALTITUDE), StateVector)


def test_extended_rows_carry_the_category():
    assert check(AIRBORNE + [4]).category == 4


def test_flarm_negative_track_is_normalised_not_rejected():
    assert check(with_field(10, -150)).true_track == 210.0


def test_callsigns_are_cleaned():
    assert clean_callsign("NKS2003 ") == "NKS2003"
    assert clean_callsign("        ") is None
    assert clean_callsign("000000  ") is None
    assert clean_callsign(None) is None


def test_rejections_carry_a_reason_the_field_and_the_original_row():
    cases = [
        (with_field(0, "zzzzzz"), "invalid_icao24", "icao24"),
        (with_field(6, None), "missing_latitude", "latitude"),
        (with_field(6, 91.0), "latitude_out_of_range", "latitude"),
        (with_field(5, -181.0), "longitude_out_of_range", "longitude"),
        (with_field(5, "east"), "invalid_longitude", "longitude"),
        (with_field(9, None), "missing_velocity", "velocity"),
        (with_field(9, 5000.0), "velocity_out_of_range", "velocity"),
        (with_field(9, 10**400), "invalid_velocity", "velocity"),  # an integer beyond any float
        (with_field(12, [10**400]), None, None),  # a receiver id of any size is one
        (with_field(7, 40000.0), "baro_altitude_out_of_range", "baro_altitude"),
        (with_field(13, None, with_field(7, None)), "missing_altitude", "baro_altitude"),
        (with_field(11, 603.88), "vertical_rate_out_of_range", "vertical_rate"),
        (with_field(8, "no"), "invalid_on_ground", "on_ground"),
        (with_field(4, T + 3600), "timestamp_in_future", "last_contact"),
        (with_field(3, T - 10093), "timestamp_too_old", "time_position"),
        (with_field(4, None), "missing_last_contact", "last_contact"),
        (with_field(14, "9999"), "invalid_squawk", "squawk"),
        (with_field(16, 7), "invalid_position_source", "position_source"),
        (AIRBORNE[:10], "malformed_row", None),
        ("not a row", "malformed_row", None),
    ]
    for row, reason, field in cases:
        rejected = check(row)
        if reason is None:
            assert isinstance(rejected, StateVector), rejected.detail
            continue
        assert isinstance(rejected, InvalidState), (row, reason)
        assert (rejected.reason, rejected.field_name) == (reason, field), rejected.detail
        assert rejected.raw == row and rejected.poll_id == "p-1"


def test_a_rejected_row_with_a_readable_icao24_keeps_it():
    assert check(with_field(6, None)).icao24 == "a65527"
    assert check(with_field(0, 5)).icao24 is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, st.lists(json_values, min_size=17, max_size=18)))
def test_any_json_value_is_accepted_or_rejected_never_raises(row):
    result = check(row)
    assert isinstance(result, (StateVector, InvalidState))
    if isinstance(result, InvalidState):
        assert result.reason and result.detail
        json.dumps(result.to_representation())  # publishable as it is


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([None, True, 1, -1.5, 1e300, "", "a65527", [], {}]), min_size=17, max_size=17))
def test_rows_mixing_plausible_values_never_raise(row):
    assert isinstance(check(row), (StateVector, InvalidState))


def test_parse_accepts_null_states_as_no_aircraft():
    assert parse_states_response(b'{"time": 5, "states": null}').rows == []


def test_parse_names_what_is_wrong():
    for body, reason in [
        (b'{"time": 5, states=[]}', "malformed_json"),
        (b'{"time": 5, "states": [["a65527", "X"', "truncated_body"),
        (b'[1, 2]', "unexpected_shape"),
        (b'{"time": "now", "states": []}', "unexpected_shape"),
        (b'{"time": 5, "states": {"a": 1}}', "unexpected_shape"),
        (b'{"time": 5, "states": [NaN]}', "malformed_json"),
        (b'\xff\xfe', "malformed_json"),
    ]:
        try:
            parse_states_response(body)
        except ResponseFormatError as error:
            assert error.reason == reason, body
        else:
            raise AssertionError(f"{body!r} was accepted")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_parse_never_raises_anything_but_a_format_error(body):
    try:
        parse_states_response(body)
    except ResponseFormatError:
        pass
