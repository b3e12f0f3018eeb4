"""Parsing of an OpenSky ``/states/all`` response body: pure, never raises on bad input
except ``ResponseFormatError`` with a reason code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class ResponseFormatError(ValueError):
    """The body is not an OpenSky states response; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class StatesResponse:
    time: int
    rows: list[Any]


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_states_response(body: bytes | str) -> StatesResponse:
    """Decode ``{"time": int, "states": [[...], ...] | null}``.

    ``states: null`` (no aircraft in view) is an empty list. The rows are left
    as they came: each is validated on its own, so one bad row never costs the
    whole poll.
    """
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        reason = "truncated_body" if _looks_truncated(body) else "malformed_json"
        raise ResponseFormatError(reason, f"body is not valid JSON ({str(error)[:120]})") from None
    if not isinstance(document, dict):
        raise ResponseFormatError("unexpected_shape", f"expected an object, got {type(document).__name__}")
    stamp = document.get("time")
    if not isinstance(stamp, int) or isinstance(stamp, bool):
        raise ResponseFormatError("unexpected_shape", f"'time' is {stamp!r}, not a Unix time")
    states = document.get("states")
    if states is None:
        return StatesResponse(stamp, [])
    if not isinstance(states, list):
        raise ResponseFormatError("unexpected_shape", f"'states' is a {type(states).__name__}, not a list")
    return StatesResponse(stamp, states)


def _looks_truncated(body: bytes | str) -> bool:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    stripped = text.rstrip()
    return bool(stripped) and stripped[0] in "[{" and stripped[-1] not in "]}"
