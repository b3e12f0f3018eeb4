"""What /aircraft/{icao24}/ shows, decided without a broker: the newest state, its first copy."""

from __future__ import annotations

from types import SimpleNamespace

import orjson

from agents.scoring import newest_scored
from tables.entry import AircraftEntry


def item(icao24: str, when: int) -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(icao24=icao24, event_time=when))


def test_the_newest_state_is_kept_and_a_repeat_of_it_keeps_its_first_copy():
    """OpenSky repeats a state in later polls and a replay sends it again: however the copies fall into
    batches, the answer is the first copy of the newest state (with `>=` a replay's copies replaced it,
    and the answer changed while the replay went on)."""
    first = {"state": {"icao24": "abc123", "time_position": 100, "last_contact": 101, "poll_id": "p447"}}
    stored = {"abc123": AircraftEntry(None, first, {})}
    scored = [item("abc123", 90), item("abc123", 100), item("abc123", 100)]
    encoded = [orjson.dumps({"poll_id": p}) for p in ("p440", "p448", "p450")]
    assert newest_scored(scored, encoded, stored)["abc123"] is first  # older and equal copies: the first stays
    newer = newest_scored([item("abc123", 110), item("abc123", 110)], [b'{"poll_id":"p460"}', b'{"poll_id":"p461"}'],
                          stored)["abc123"]
    assert orjson.dumps(newer) == b"{\"poll_id\":\"p460\"}"  # newer: its first copy in the batch
    unknown = newest_scored([item("new000", 5)], [b"{}"], {"new000": AircraftEntry(None, None, {})})
    assert orjson.dumps(unknown["new000"]) == b"{}"  # nothing stored yet: the batch's state
