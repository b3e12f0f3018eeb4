"""Facts computed straight from a recording (what the pipeline must arrive at), and feeding it to Kafka."""

from __future__ import annotations

import collections

from flights_app.fake_opensky.recordings import load_recording
from flights_app.topic_names import AGGREGATED
from tests.harness import TestApp, read_topic

WINDOW_S = 600


def expected_counts(recording, window_s: int = WINDOW_S) -> tuple[dict[tuple[str, int], int], int]:
    """Distinct (icao24, time_position or last_contact) per (country, window), straight from the files;
    and the latest event time (the watermark the replay ends on)."""
    distinct = set()
    for poll in load_recording(recording):
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


def produce_recording(bootstrap: str, topic: str, recording) -> int:
    """Every valid state of the recording onto ``topic``, as the source agent publishes them."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    from flights_app.records import StateVector
    from flights_app.validation import validate_state

    async def send() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
        await producer.start()
        sent = 0
        try:
            for poll in load_recording(recording):
                for row in poll.states or []:
                    state = validate_state(row, poll.time, ingest_time=float(poll.time), poll_id=poll.name)
                    if isinstance(state, StateVector):
                        await producer.send(topic, key=state.icao24.encode(), value=state.dumps())
                        sent += 1
            await producer.flush()
        finally:
            await producer.stop()
        return sent

    return asyncio.run(send())


def latest_records(app: TestApp) -> tuple[dict, list]:
    records = [v for _, v in read_topic(app.bootstrap, app.topic(AGGREGATED))]
    latest = {}
    for r in sorted(records, key=lambda r: r["emitted_at"]):
        if r["dimension"] == "country":
            latest[(r["name"], r["window_start"])] = r
    return latest, records
