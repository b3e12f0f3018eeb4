"""The web endpoints' parameters, parsed: pure functions that accept any text and never raise."""

from __future__ import annotations

from flights_app.validation import parse_icao24

#: A window given as a Unix time has at most this many digits (year 2286 has 10).
MAX_TIME_DIGITS = 12


def icao24(text: str) -> str | None:
    """An ICAO 24-bit address as six lower-case hex digits, or None if ``text`` is not one."""
    return parse_icao24(text)


def pick_window(wanted: str, starts: set[int], size_s: int) -> int | None | str:
    """``current`` (the newest window of ``starts``), ``previous`` or a Unix time (the window holding it);
    None when there is no window yet; an error text when ``wanted`` is none of these."""
    if wanted not in ("current", "previous"):
        text = wanted.strip()
        digits = text.removeprefix("-")
        if not (digits.isascii() and digits.isdigit() and len(digits) <= MAX_TIME_DIGITS):
            return "window must be current, previous or a Unix time"
        return int(text) // size_s * size_s
    if not starts:
        return None
    latest = max(starts)
    return latest if wanted == "current" else latest - size_s
