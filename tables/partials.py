"""The protocol of flight-window-partials: two records, each with its ``kind``, declared once here.

The window core (tables/window_core.py) writes them as plain dataclasses of the same fields.

- ``WindowPartials`` (kind ``partials``): the aircraft partials (``PartialUpdate``, each an aircraft's
  whole ``Partial`` of one window) of the groups (``GroupPartials``) living in one partition, stamped
  with their sender's partition of flight-raw-data and its event-time watermark; without groups, a
  tick carrying only the watermark.
- ``WindowClose`` (kind ``close``): the flush asks the group's partition to publish the window's
  final record.

``decode_partial`` checks a message against these declarations (``flights_app.typed``) and builds
the record, or rejects the message with what is wrong. The shapes an older worker wrote (one message
per group, a tick, a close, without ``kind``) are read as these.
"""

from __future__ import annotations

from typing import Any

import faust

from flights_app.decode import load_json, reject
from flights_app.records import InvalidState
from flights_app.typed import parse
from tables.dimensions import BY_NAME
from tables.windows import Partial


def _group_problem(dimension: str, name: str) -> str | None:
    if dimension not in BY_NAME:
        return f"dimension={dimension!r} is not one of {', '.join(BY_NAME)}"
    if not name:
        return "name is empty"
    return None


class PartialUpdate(faust.Record, serializer="json", include_metadata=False):
    """One aircraft's whole partial of one window: stored by icao24, replacing any copy (an upsert)."""

    window_start: int
    icao24: str
    partial: Partial  # arrives and is stored as Partial.as_dict()


class GroupPartials(faust.Record, serializer="json", include_metadata=False):
    """The partials of one group (a country, an airline, ...) of one dimension."""

    dimension: str
    name: str
    partials: list[PartialUpdate]

    def problem(self) -> str | None:
        return _group_problem(self.dimension, self.name)


class WindowPartials(faust.Record, serializer="json", include_metadata=False):
    """The groups' partials from partition ``source`` of flight-raw-data at its ``watermark`` (None: the
    source knows none yet); no groups: a tick; ``idle``: the source has nothing to process. Partials an
    older worker wrote before watermarks travelled with them have neither source nor watermark."""

    source: int | None
    watermark: float | None
    groups: list[GroupPartials]
    idle: bool = False
    kind: str = "partials"

    def problem(self) -> str | None:
        if self.source is None and self.watermark is not None:
            return "a watermark needs its source partition"
        if self.source is not None and self.watermark is None and self.groups:
            return "partials need their source's watermark (only a tick may have none)"
        return None


class WindowClose(faust.Record, serializer="json", include_metadata=False):
    """Publish the final record of the window of ``(dimension, name)`` starting at ``close``."""

    dimension: str
    name: str
    close: int
    kind: str = "close"

    def problem(self) -> str | None:
        return _group_problem(self.dimension, self.name)


WindowMessage = WindowPartials | WindowClose
KINDS: dict[str, type[WindowPartials] | type[WindowClose]] = {"partials": WindowPartials, "close": WindowClose}


def _current_shape(data: dict) -> dict | str:
    """A message written before ``kind`` (one message per group, a tick, a close) in today's shape."""
    if "tick" in data:
        if data["tick"] is not True:
            return "a tick needs tick=true, a source partition and a watermark"
        return {"kind": "partials", "source": data.get("source"), "watermark": data.get("watermark"),
                "groups": []}
    if "close" in data:
        return {**data, "kind": "close"}
    group = {k: data[k] for k in ("dimension", "name", "partials") if k in data}
    return {"kind": "partials", "source": data.get("source"), "watermark": data.get("watermark"),
            "groups": [group]}


def window_message(data: Any) -> WindowMessage | str:
    """Decoded JSON as a message of flight-window-partials, or what is wrong with it."""
    if not isinstance(data, dict):
        return f"expected a JSON object, got {type(data).__name__}"
    if "kind" not in data:
        data = _current_shape(data)
        if isinstance(data, str):
            return data
    record_type = KINDS.get(data["kind"]) if isinstance(data["kind"], str) else None
    if record_type is None:
        return f"kind={str(data['kind'])[:40]!r} is not {' or '.join(KINDS)}"
    return parse(record_type, data)


def decode_partial(value: bytes | None, key: bytes | None, place: str) -> WindowMessage | InvalidState:
    """A message of ``flight-window-partials`` (written by the scoring agent and the window timer) as
    its record, or its rejection."""
    data = load_json(value, key, place)
    if isinstance(data, InvalidState):
        return data
    message = window_message(data)
    if isinstance(message, str):
        return reject("malformed_partial", message, value, key, place)
    return message
