"""Finding an aircraft and watching some (pure, no Panel).

- ``suggest``: the aircraft a search text names, best first: an icao24 equal to it or starting with
  it, a callsign starting with it (an airline's prefix: "DLH"), then a callsign containing it.
- A watch list is a set of icao24s and callsigns, written as text ("AFR123, 3c6444"): the same text in
  the browser's storage and in the page's address (``?watch=AFR123,3c6444``), so it can be shared.
- ``WatchList.changes``: what to tell the person at each refresh: a watched aircraft that appears, or
  that raises an alert or a flag it did not have.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_WATCHED = 50
_ENTRY = re.compile(r"^[A-Za-z0-9]{2,8}$")


def suggest(text: str, aircraft: Iterable[dict], most: int = 8) -> list[tuple[str, str]]:
    """(icao24, label) of the aircraft ``text`` names, best first; nothing for fewer than 2 characters."""
    wanted = text.strip().lower()
    if len(wanted) < 2:
        return []
    ranked = []
    for row in aircraft:
        icao24, callsign = row["icao24"], (row.get("callsign") or "").strip()
        sign = callsign.lower()
        if icao24 == wanted:
            rank = 0
        elif icao24.startswith(wanted):
            rank = 1
        elif sign.startswith(wanted):
            rank = 2
        elif wanted in sign:
            rank = 3
        else:
            continue
        ranked.append((rank, sign or icao24, icao24, label(row)))
    ranked.sort()
    return [(icao24, text) for _, _, icao24, text in ranked[:most]]


def label(row: dict) -> str:
    callsign = (row.get("callsign") or "").strip()
    country = row.get("country") or ""
    return f"{callsign or '(no callsign)'} ({row['icao24']}){', ' + country if country else ''}"


def parse_watch(text: str) -> tuple[set[str], list[str]]:
    """The entries of a watch list's text (lower case), and the parts that are not an icao24 or a
    callsign (2-8 letters or digits), to say so."""
    entries, refused = set(), []
    for part in re.split(r"[,\s]+", text or ""):
        if not part:
            continue
        if _ENTRY.match(part) and len(entries) < MAX_WATCHED:
            entries.add(part.lower())
        else:
            refused.append(part[:20])
    return entries, refused


def format_watch(entries: Iterable[str]) -> str:
    return ",".join(sorted(entries))


def watched(row: dict, entries: set[str]) -> bool:
    return row["icao24"] in entries or (row.get("callsign") or "").strip().lower() in entries


@dataclass
class WatchList:
    """The watched aircraft seen so far in one session, and the flags each has shown."""
    entries: set[str] = field(default_factory=set)
    seen: dict[str, set[str]] = field(default_factory=dict)  # icao24 -> flags already told

    def set(self, entries: set[str]) -> None:
        self.entries = set(entries)
        self.seen = {icao24: flags for icao24, flags in self.seen.items() if icao24 in self.entries}

    def changes(self, rows: Iterable[dict], flags_of) -> list[tuple[str, str]]:
        """(kind, message) for each watched aircraft in ``rows`` that appeared ("info") or shows a flag it
        had not shown ("warning"); ``flags_of(row)`` lists a row's flags (alerts, faults, the model's verdict)."""
        told: list[tuple[str, str]] = []
        if not self.entries:
            return told  # nobody watched: the 40,000 rows of the peak are not looked at
        for row in rows:
            if not watched(row, self.entries):
                continue
            flags = set(flags_of(row))
            known = self.seen.get(row["icao24"])
            if known is None:
                self.seen[row["icao24"]] = set(flags)
                told.append(("info", f"Watched aircraft {label(row)} is in the air traffic now."))
                if flags:
                    told.append(("warning", f"Watched aircraft {label(row)}: {'; '.join(sorted(flags))}"))
                continue
            new = flags - known
            if new:
                known |= new
                told.append(("warning", f"Watched aircraft {label(row)}: {'; '.join(sorted(new))}"))
        return told
