"""flights_app.typed: JSON checked against a record's declared field types, and the record built."""

from __future__ import annotations

from dataclasses import dataclass

import faust
import pytest

from flights_app.counts import NonNegative
from flights_app.typed import parse


@dataclass
class Counts:
    seen: NonNegative = 0
    mean: float | None = None


class Item(faust.Record, serializer="json", include_metadata=False):
    name: str
    counts: Counts


class Box(faust.Record, serializer="json", include_metadata=False):
    items: list[Item]
    note: str | None
    open: bool = False

    def problem(self) -> str | None:
        return "a box needs an item" if not self.items else None


GOOD = {"items": [{"name": "a", "counts": {"seen": 2, "mean": 1.5}}], "note": None}


def test_a_message_of_the_declared_types_becomes_the_record_with_its_nested_records():
    box = parse(Box, {**GOOD, "from_a_newer_sender": 1})
    assert isinstance(box, Box) and box.open is False and box.note is None
    assert isinstance(box.items[0], Item) and box.items[0].name == "a"
    assert box.items[0].counts == {"seen": 2, "mean": 1.5}  # a dataclass field stays the object that arrived
    assert box == Box(items=[Item(name="a", counts={"seen": 2, "mean": 1.5})], note=None, open=False)


@pytest.mark.parametrize("change, says", [
    ({"items": "x"}, "items='x' is not a list"),
    ({"items": [{"name": 1, "counts": {"seen": 0, "mean": None}}]}, "items[0].name=1 is not a string"),
    ({"items": [GOOD["items"][0], {"name": "b", "counts": {"seen": -1, "mean": None}}]},
     "items[1].counts.seen=-1 is not a count"),
    ({"items": [{"name": "b", "counts": {"seen": True, "mean": None}}]}, "items[0].counts.seen=True is not a count"),
    ({"items": [{"name": "b", "counts": {"seen": 1, "mean": "x"}}]}, "items[0].counts.mean='x' is not a number"),
    ({"items": [{"name": "b", "counts": {"seen": 1}}]}, "is not an object with exactly the fields of Counts"),
    ({"items": [{"counts": {"seen": 1, "mean": None}}]}, "items[0].name is missing"),
    ({"open": "yes"}, "open='yes' is not true or false"),
    ({"items": []}, "is not valid: a box needs an item"),
])
def test_a_message_of_other_types_is_refused_with_the_field_at_fault(change, says):
    result = parse(Box, {**GOOD, **change})
    assert isinstance(result, str) and says in result, result


def test_a_missing_field_without_a_default_and_a_non_object_are_refused():
    assert parse(Box, {"note": "x"}) == "items is missing"
    assert parse(Box, {"items": GOOD["items"]}).note is None  # Faust gives an optional field the default None
    assert parse(Box, [1]) == "the message=[1] is not an object (Box)"
