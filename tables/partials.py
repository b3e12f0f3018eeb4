"""The protocol of flight-window-partials, built and checked in one place.

Two kinds of message, both JSON objects:

- ``partials_message``: ``{"kind": "partials", "source", "watermark", "behind", "groups": [{"dimension",
  "name", "partials": [{"window_start", "icao24", "partial"}]}]}``: the aircraft partials (``Partial``)
  of the groups living in one partition, stamped with their sender's partition of flight-raw-data and
  its event-time watermark; without groups, a tick carrying only the watermark.
- ``close_message``: ``{"kind": "close", "dimension", "name", "close": window_start}``: the flush asks the
  group's partition to publish the window's final record.

``decode_partial`` accepts exactly these (and what an older worker wrote), or rejects the message with
what is wrong; a partial's fields are checked against the ``Partial`` dataclass's own declaration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flights_app.decode import load_json, reject
from flights_app.records import InvalidState
from tables.dimensions import BY_NAME
from tables.windows import Partial


def partials_message(source: int, watermark: float, behind: bool, groups: Sequence[dict] = ()) -> dict:
    """The partials of ``groups`` (each ``{"dimension", "name", "partials"}``) from partition ``source`` of
    flight-raw-data, at its ``watermark`` (``behind``: more states wait there); no groups: a tick."""
    return {"kind": "partials", "source": source, "watermark": watermark, "behind": behind, "groups": list(groups)}


def close_message(dimension: str, name: str, start: int) -> dict:
    """Ask for the final record of the window of ``(dimension, name)`` starting at ``start``."""
    return {"kind": "close", "dimension": dimension, "name": name, "close": start}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: A partial's fields and their declared types, from ``Partial`` itself: ``int`` counts are whole and not
#: negative, ``float`` fields are numbers, ``float | None`` ones numbers or null.
_PARTIAL_TYPES = {name: f.type for name, f in Partial.__dataclass_fields__.items()}


def _partial_fields_ok(partial: Any) -> bool:
    if not isinstance(partial, dict) or partial.keys() != _PARTIAL_TYPES.keys():
        return False
    for name, value in partial.items():
        kind = _PARTIAL_TYPES[name]
        if kind == "int":
            if not (_is_int(value) and value >= 0):
                return False
        elif not ((value is None and kind.endswith("| None")) or (_is_number(value) and value == value)):
            return False
    return True


def _updates_problem(partials: Any) -> str | None:
    if not isinstance(partials, list):
        return "partials is missing or not a list"
    for update in partials:
        if not (isinstance(update, dict) and _is_int(update.get("window_start"))
                and isinstance(update.get("icao24"), str) and _partial_fields_ok(update.get("partial"))):
            return f"a partial is not {{window_start, icao24, partial}}: {str(update)[:100]}"
    return None


def _group_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"a group is not an object: {str(data)[:100]}"
    for name in ("dimension", "name"):
        if not isinstance(data.get(name), str) or not data[name]:
            return f"{name} is missing or not a string"
    if data["dimension"] not in BY_NAME:
        return f"dimension={data['dimension']!r} is not one of {', '.join(BY_NAME)}"
    return None


def _partial_message(data: Any) -> dict | str:
    """A message of ``flight-window-partials`` in its one shape, or what is wrong with it.

    The two kinds (``partials_message``, ``close_message``). The shapes an older worker wrote (one
    message per group, a tick, a close, without ``kind``) read as these.
    """
    if not isinstance(data, dict):
        return f"expected a JSON object, got {type(data).__name__}"
    kind = data.get("kind")
    # A group's partials written before watermarks travelled with them carry none.
    unstamped = kind is None and not {"source", "tick", "close"} & set(data)
    if kind is None:  # the shapes before kind
        if "tick" in data:
            if data["tick"] is not True:
                return "a tick needs tick=true, a source partition and a watermark"
            kind, data = "partials", {**data, "groups": []}
        elif "close" in data:
            kind = "close"
        else:
            kind = "partials"
            data = {**data, "groups": [{k: data.get(k) for k in ("dimension", "name", "partials")}]}
    if kind == "close":
        problem = _group_problem(data)
        if problem is None and not _is_int(data.get("close")):
            problem = f"close={data.get('close')!r} is not a window start"
        return problem or {"kind": "close", "dimension": data["dimension"], "name": data["name"],
                           "close": data["close"]}
    if kind != "partials":
        return f"kind={kind!r} is not partials or close"
    source, watermark = data.get("source"), data.get("watermark")
    if not ((_is_int(source) and _is_number(watermark)) or (unstamped and watermark is None)):
        return "source and watermark must be a partition and an event time"
    behind = data.get("behind", False)
    if not isinstance(behind, bool):
        return "behind must be true or false"
    groups = data.get("groups")
    if not isinstance(groups, list):
        return "groups is missing or not a list"
    for group in groups:
        problem = _group_problem(group) or _updates_problem(group.get("partials"))
        if problem is not None:
            return problem
    return {"kind": "partials", "source": source, "watermark": watermark, "behind": behind, "groups": groups}


def decode_partial(value: bytes | None, key: bytes | None, place: str) -> dict | InvalidState:
    """A message of ``flight-window-partials`` (written by the scoring agent and the window timer) in
    its one shape (see ``_partial_message``), or its rejection."""
    data = load_json(value, key, place)
    if isinstance(data, InvalidState):
        return data
    message = _partial_message(data)
    if isinstance(message, str):
        return reject("malformed_partial", message, value, key, place)
    return message


