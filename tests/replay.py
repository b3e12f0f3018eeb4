"""Facts computed straight from a recording (what the pipeline must arrive at), and feeding it to Kafka."""

from __future__ import annotations

import asyncio
import collections
import json
import re

from flights_app.fake_opensky.recordings import load_recording
from flights_app.topic_names import AGGREGATED, PROCESSED, WINDOW_PARTIALS
from tests.harness import TestApp, read_topic

WINDOW_S = 600


def expected_counts(recording, window_s: int = WINDOW_S, polls: slice = slice(None),
                    ) -> tuple[dict[tuple[str, int], int], int]:
    """Distinct (icao24, time_position or last_contact) per (country, window), straight from the files
    (of the polls in ``polls``); and the latest event time (the watermark the replay ends on)."""
    distinct = set()
    for poll in load_recording(recording)[polls]:
        for row in poll.states or []:
            event_time = row[3] if row[3] is not None else row[4]
            distinct.add((row[2], row[0], event_time))
    counts = collections.Counter((country, int(t // window_s) * window_s) for country, _, t in distinct)
    return dict(counts), max(t for _, _, t in distinct)


def newest_states(recording) -> dict[str, dict]:
    """icao24 -> the fields of its newest state (by event time) in the recording."""
    newest: dict[str, tuple] = {}
    for poll in load_recording(recording):
        for row in poll.states or []:
            event_time = row[3] if row[3] is not None else row[4]
            if row[0] not in newest or event_time >= newest[row[0]][0]:
                newest[row[0]] = (event_time, row)
    return {icao24: {"event_time": t, "origin_country": row[2], "callsign": row[1]}
            for icao24, (t, row) in newest.items()}


def expected_per_aircraft(recording, window_s: int = WINDOW_S) -> collections.Counter:
    """(dimension, name, window, icao24) -> distinct states, for countries, airlines and altitude bands,
    straight from the files. An aircraft's states of one window count for the airline of its first state in
    that window (as the worker attributes them: tables.windows.airline_of of the cleaned callsign); each
    state counts in its own altitude band (the first report of an (icao24, event time) is the one counted)."""
    from flights_app.records import StateVector
    from flights_app.validation import validate_state
    from tables.dimensions import altitude_band
    from tables.windows import airline_of

    first_airline: dict[tuple[str, int], str | None] = {}
    distinct: dict[tuple[str, int], tuple[str, int, str | None]] = {}
    for poll in load_recording(recording):
        for row in poll.states or []:
            state = validate_state(row, poll.time, ingest_time=float(poll.time), poll_id=poll.name)
            if not isinstance(state, StateVector):
                continue
            start = int(state.event_time // window_s) * window_s
            first_airline.setdefault((state.icao24, start), airline_of(state.callsign))
            distinct.setdefault((state.icao24, state.event_time), (state.origin_country, start, altitude_band(state)))
    counts = collections.Counter()
    for (icao24, _), (country, start, band) in distinct.items():
        counts[("country", country, start, icao24)] += 1
        airline = first_airline[(icao24, start)]
        if airline:
            counts[("airline", airline, start, icao24)] += 1
        if band:
            counts[("altitude", band, start, icao24)] += 1
    return counts


def expected_totals(recording, window_s: int = WINDOW_S) -> dict[tuple[str, str, int], int]:
    """(dimension, name, window) -> distinct states (see ``expected_per_aircraft``)."""
    totals = collections.Counter()
    for (dimension, name, start, _), n in expected_per_aircraft(recording, window_s).items():
        totals[(dimension, name, start)] += n
    return dict(totals)


def produce_recording(bootstrap: str, topic: str, recording, polls: slice = slice(None),
                      malformed_every: int = 0, batched: bool = True, partitions: int = 4) -> int:
    """Every valid state of the recording (of the polls in ``polls``) onto ``topic``, as the source
    agent publishes them: one batch record per partition and poll (``batched=False``: one record per
    state, as older data and other tools may write them); with ``malformed_every``, also a malformed
    message (``malformed(i)``) after the poll that completes every so many states. Returns the number
    of states sent."""
    from aiokafka import AIOKafkaProducer

    from flights_app.batches import pack_states
    from flights_app.records import StateVector
    from flights_app.validation import validate_state

    async def send() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
        await producer.start()
        sent = malformed_sent = 0
        try:
            for poll in load_recording(recording)[polls]:
                states = [state for row in poll.states or []
                          if isinstance(state := validate_state(row, poll.time, ingest_time=float(poll.time),
                                                                poll_id=poll.name), StateVector)]
                if batched:
                    records = [(key, value) for _, key, value in pack_states(states, partitions)]
                else:
                    records = [(state.icao24.encode(), state.dumps()) for state in states]
                for key, value in records:
                    await producer.send(topic, key=key, value=value)
                sent += len(states)
                while malformed_every and (malformed_sent + 1) * malformed_every <= sent:  # after its poll
                    malformed_sent += 1
                    await producer.send(topic, key=records[-1][0], value=malformed(malformed_sent)[0])
            await producer.flush()
        finally:
            await producer.stop()
        return sent

    return asyncio.run(send())


def malformed(i: int) -> tuple[bytes, str]:
    """The ``i``-th malformed message of a replay, and the reason it must be rejected with:
    alternately not JSON and JSON of the wrong schema; each carries its number."""
    if i % 2:
        return f"garbage #{i} {{not json".encode(), "not_json"
    return json.dumps({"icao24": "a65527", "note": f"wrong schema #{i}"}).encode(), "malformed_message"


def malformed_number(invalid: dict) -> int | None:
    """The number a malformed message carried, from its record on the invalid topic."""
    raw = invalid.get("raw")
    text = raw if isinstance(raw, str) else json.dumps(raw)
    match = re.search(r"#(\d+)", text or "")
    return int(match.group(1)) if match else None


def latest_records(app: TestApp) -> tuple[dict, list]:
    records = [v for _, v in read_topic(app.bootstrap, app.topic(AGGREGATED))]
    latest = {}
    for r in sorted(records, key=lambda r: r["emitted_at"]):
        if r["dimension"] == "country":
            latest[(r["name"], r["window_start"])] = r
    return latest, records


def latest_totals(app: TestApp) -> dict[tuple[str, str, int], int]:
    """(dimension, name, window) -> events, of the newest aggregated record of each."""
    latest = {}
    for _, r in read_topic(app.bootstrap, app.topic(AGGREGATED), timeout_s=60):
        key = (r["dimension"], r["name"], r["window_start"])
        if key not in latest or r["emitted_at"] >= latest[key]["emitted_at"]:
            latest[key] = r
    return {k: r["events"] for k, r in latest.items()}


def wait_for_exact_totals(app: TestApp, expected: dict, timeout_s: float, what: str, recording=None) -> None:
    """Wait until ``latest_totals`` equals ``expected``; on timeout, fail showing what differs (and,
    given the ``recording``, which stage holds what for the windows that differ)."""
    from tests.harness import wait_until

    try:
        wait_until(lambda: app.check_workers() or latest_totals(app) == expected, timeout_s, what, interval_s=2)
    except AssertionError as error:
        got = latest_totals(app)
        diff = {k: (got.get(k), expected.get(k)) for k in set(got) | set(expected) if got.get(k) != expected.get(k)}
        by_dimension = collections.Counter(k[0] for k in diff)
        stages = ""
        if recording is not None:
            from tests.diagnosis import where_counts_went_missing

            report = asyncio.run(where_counts_went_missing(
                app.bootstrap, app.env["FLIGHTS_APP_ID"], {k: got.get(k) for k in sorted(diff)[:8]},
                expected_per_aircraft(recording), processed_topic=app.topic(PROCESSED),
                partials_topic=app.topic(WINDOW_PARTIALS)))
            stages = f"; what each stage holds: {json.dumps(report)}"
        live = [w for w in app.workers if not w.stopped and w.alive()]
        stages += f"; where the live workers' agents wait: {[w.agent_stacks() for w in live]}"
        raise AssertionError(f"{error}: {len(diff)} (dimension, name, window) differ {dict(by_dimension)} "
                             f"as (got, expected), e.g. {sorted(diff.items())[:8]}{stages}") from None
