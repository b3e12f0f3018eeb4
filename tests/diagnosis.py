"""Where a window's count went missing, read from the tables' changelogs: the aircraft stage
(``aircraft``: each aircraft's states counted in its windows), the group stage
(``group-windows``: the partials it holds per window), or only the published record.

Used by the soak and by the tests that check exact totals, to say on failure which stage lost
the states (the newest value of each key before any tombstone: expired windows are deleted).
"""

from __future__ import annotations

import collections

from flights_app.records import event_time_of
from tables.keys import group_key, shard_of
from tables.window_core import BY_STATE, seen_mask
from tests.harness import group_offsets, read_topic_async

Window = tuple[str, str, int]  # (dimension, name, window_start)


def _counted(partial: dict | None) -> int:
    partial = partial or {}
    return partial.get("count", 0) + partial.get("late", 0)


async def stage_holdings(bootstrap: str, app_id: str, windows: set[Window]) -> tuple[dict, dict]:
    """For ``windows``: what the group stage holds, (dimension, name, start) -> icao24 -> states, and
    what the aircraft stage holds, the same -> icao24 -> (states seen, states in its partial)."""
    async def changelog(table: str) -> list[tuple[str, dict | None]]:
        # Each key's records sit in one partition, in order: later values replace earlier ones.
        return await read_topic_async(bootstrap, f"{app_id}-{table}-changelog", timeout_s=600)

    groups: dict[Window, dict[str, int]] = collections.defaultdict(dict)
    for key, value in await changelog("group-windows"):
        if not (isinstance(value, dict) and "partials" in value):
            continue
        group, start, _ = key.split("@")
        dimension, _, name = group.partition("|")
        if (dimension, name, int(start)) in windows:
            for icao24, partial in value["partials"].items():
                groups[(dimension, name, int(start))][icao24] = _counted(partial)
    aircraft: dict[Window, dict[str, tuple[int, int]]] = collections.defaultdict(dict)
    latest: dict[str, dict] = {}
    for icao24, value in await changelog("aircraft"):
        if isinstance(value, dict):
            latest[icao24] = value
    for icao24, value in latest.items():
        for start, entry in (value.get("windows") or {}).items():
            counted = seen_mask(entry, int(start)).bit_count()
            for dimension in ("country", "airline", "category"):
                window = (dimension, entry.get(dimension), int(start))
                if window in windows:
                    aircraft[window][icao24] = (counted, _counted(entry.get("partial")))
            for dimension, by_group in (entry.get(BY_STATE) or {}).items():  # per-state dimensions
                for name, partial in by_group.items():
                    if (dimension, name, int(start)) in windows:
                        aircraft[(dimension, name, int(start))][icao24] = (counted, _counted(partial))
    return groups, aircraft


async def scored_states(bootstrap: str, processed_topic: str, window_s: int) -> dict[tuple[str, int], int]:
    """(icao24, window start) -> distinct event times scored (on ``processed_topic``)."""
    seen: dict[tuple[str, int], set] = collections.defaultdict(set)
    for _, value in await read_topic_async(bootstrap, processed_topic, timeout_s=600):
        state = value.get("state") if isinstance(value, dict) else None
        if isinstance(state, dict):
            when = event_time_of(state)
            seen[(state["icao24"], int(when // window_s) * window_s)].add(when)
    return {k: len(v) for k, v in seen.items()}


def largest(history: dict | None) -> tuple[int, str] | None:
    """The largest count sent on flight-window-partials in ``history`` (``histories``' entry) and where its
    first copy is ("partition:offset"): was the aircraft stage's newest partial ever sent?"""
    best = None
    for told in (history or {}).get("partials", []):
        place, _, count = told.partition("=")
        if best is None or int(count) > best[0]:
            best = (int(count), place)
    return best


async def histories(bootstrap: str, app_id: str, partials_topic: str, wanted: set[tuple[str, str, int, str]]
                    ) -> dict[tuple[str, str, int, str], dict[str, list[str]]]:
    """(dimension, name, start, icao24) of ``wanted`` -> every count of it, in order, as
    "partition:offset=count": on flight-window-partials (each partial sent) and on the group table's
    changelog (each value the group stage wrote for its shard): where a count went back, and when."""
    out: dict = collections.defaultdict(lambda: {"partials": [], "group_changelog": []})
    for _, value, partition, offset in await read_topic_async(bootstrap, partials_topic, timeout_s=600, places=True):
        for group in (value.get("groups") or []) if isinstance(value, dict) else []:
            for update in group.get("partials") or []:
                key = (group["dimension"], group["name"], update["window_start"], update["icao24"])
                if key in wanted:
                    out[key]["partials"].append(f"{partition}:{offset}={_counted(update['partial'])}")
    shards = {group_key(d, n, start, shard_of(icao24)): (d, n, start, icao24) for d, n, start, icao24 in wanted}
    changelog = f"{app_id}-group-windows-changelog"
    for key, value, partition, offset in await read_topic_async(bootstrap, changelog, timeout_s=600, places=True):
        if key in shards:
            partial = value.get("partials", {}).get(shards[key][3]) if isinstance(value, dict) else None
            count = "deleted" if value is None else "absent" if partial is None else _counted(partial)
            out[shards[key]]["group_changelog"].append(f"{partition}:{offset}={count}")
    return dict(out)


async def where_counts_went_missing(bootstrap: str, app_id: str, published: dict[Window, int | None],
                                    per_aircraft: collections.Counter, examples: int = 5,
                                    processed_topic: str | None = None, window_s: int = 600,
                                    partials_topic: str | None = None) -> list[dict]:
    """For each wrong window (``published``: its newest published count): the states sent into it
    (``per_aircraft``: (dimension, name, start, icao24) -> distinct states), the totals each stage
    holds, and up to ``examples`` aircraft whose count the group stage holds differs from those sent
    (with ``processed_topic``: also how many of their states were scored at all)."""
    groups, aircraft = await stage_holdings(bootstrap, app_id, set(published))
    scored = await scored_states(bootstrap, processed_topic, window_s) if processed_topic else {}
    sent: dict[Window, dict[str, int]] = collections.defaultdict(dict)
    for (dimension, name, start, icao24), n in per_aircraft.items():
        if (dimension, name, start) in published:
            sent[(dimension, name, start)][icao24] = n
    report = []
    for window, count in sorted(published.items(), key=lambda item: str(item[0])):
        held, own = groups.get(window, {}), aircraft.get(window, {})
        short = [{"icao24": icao24, "sent": n, "group_stage_holds": held.get(icao24, 0),
                  "aircraft_stage_seen": own.get(icao24, (0, 0))[0],
                  "aircraft_stage_partial": own.get(icao24, (0, 0))[1],
                  **({"scored": scored.get((icao24, window[2]), 0)} if processed_topic else {})}
                 for icao24, n in sorted(sent[window].items()) if held.get(icao24, 0) != n]
        if partials_topic is not None:
            # Was the aircraft stage's newest partial ever sent, and did the group stage commit past it?
            try:
                told = await histories(bootstrap, app_id, partials_topic,
                                       {(*window, entry["icao24"]) for entry in short[:examples]})
                for entry in short[:examples]:
                    entry["history"] = told.get((*window, entry["icao24"]))
                    entry["largest_partial_on_topic"] = largest(entry["history"])
                committed = {p: offset for p, (offset, _) in
                             (await group_offsets(bootstrap, app_id, partials_topic)).items()}
            except Exception as error:  # noqa: BLE001 - evidence only: never hide the failure it explains
                committed = f"could not be read: {error!r}"
        report.append({"window": list(window), "sent": sum(sent[window].values()), "published": count,
                       "group_stage_holds": sum(held.values()),
                       "aircraft_stage_holds": sum(partial for _, partial in own.values()),
                       "aircraft_short": short[:examples], "aircraft_short_count": len(short),
                       **({"partials_committed": committed} if partials_topic is not None else {})})
    return report
