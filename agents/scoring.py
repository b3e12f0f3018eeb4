"""The scoring agent: every valid state becomes exactly one scored state.

    flight-raw-data (batches of states, or single states) --take_events(n, within)--> per partition:
        each aircraft's entry (tables.aircraft) -> score_batch (features, phase, model, rules)
        -> flight-processed-data (+ flight-alerts)
        -> the windows' aircraft stage (agents.windows.WindowStage.count_in_windows): deduplicated,
           counted in the aircraft's window partial -> flight-window-partials
        -> each aircraft's entry written back once: its last states and its windows

One agent does both so that a state is decoded once and every output of a batch
is acknowledged before its offsets commit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import orjson
from faust.types import AppT

from agents.windows import WindowStage
from agents.windows import stage as window_stage
from flights_app.app import app, settings
from flights_app.batches import Chunk
from flights_app.decode import decode_raw, rejections
from flights_app.metrics import Metric, StageMetrics, scorer_batch_seconds, scorer_batch_size
from flights_app.notify import alert_channels
from flights_app.publish import Outbox, encode
from flights_app.records import Alert, ScoredState, StateVector, event_time_of
from flights_app.settings import Settings
from flights_app.topics import alerts, invalid_states, processed_states, raw_states
from ml.model import ModelError
from ml.registry import ModelRegistry
from ml.scoring import pages, score_batch
from tables.aircraft import aircraft, memory_of
from tables.direct import TableWrites, read
from tables.entry import AircraftEntry
from tables.partitions import by_partition, partition_of

log = logging.getLogger("flights_app.scoring")


#: A chunk of states (``Chunk``) ends once it holds FLIGHTS_SCORE_BATCH states or this many aircraft.
#: Each aircraft is read, written and sent to the windows once per chunk, so a chunk repeating aircraft
#: is cheaper the longer it is; one of distinct aircraft gains nothing from growing, and holds every
#: one's entry in memory (the 40,000-aircraft run peaks at 510 MB in chunks of 4,000 of its states, and
#: at 440 MB with chunks ending at 1,000 aircraft).
CHUNK_AIRCRAFT_MAX = 1000

#: A batch waits for its sends' acknowledgements once this many records are on their way (a chunk of
#: FLIGHTS_SCORE_BATCH states sends one to two records a state), so its memory stays bounded.
IN_FLIGHT_MAX = 10_000

#: The scoring stage's counters (exported by /metrics, read by /model/).
SCORER_METRICS = (
    Metric("batches", "flights_scorer_batches", "Batches scored"),
    Metric("events", "flights_scored_states", "States scored and published to flight-processed-data"),
    Metric("anomalies", "flights_anomalies", "States the model flagged as anomalous"),
    Metric("alerts", "flights_alerts", "Alerts published to flight-alerts"),
    Metric("data_faults", "flights_data_faults", "Scored states with a data fault (reports that cannot be true)"),
    Metric("last_batch_size", "flights_scorer_last_batch_size", "States in the last batch", gauge=True),
    Metric("last_batch_ms", "flights_scorer_last_batch_ms", "Time the last batch took, ms", gauge=True),
)


def alert_for(scored: ScoredState, alert_threshold: float, alert_score: float) -> Alert | None:
    """What pages (``ml.scoring.pages``), from the model's alert threshold or ``alert_score`` (FLIGHTS_ALERT_SCORE)
    if higher."""
    if not pages(scored.alerts, scored.data_faults, scored.ml_is_anomaly, scored.ml_anomaly_score,
                 max(alert_threshold, alert_score)):
        return None
    reasons = list(scored.alerts)
    if scored.ml_is_anomaly and not scored.data_faults:
        reasons.append(f"model anomaly (score {scored.ml_anomaly_score:.2f}): {scored.anomaly_reason}")
    s = scored.state
    return Alert(icao24=s.icao24, callsign=s.callsign, event_time=s.event_time, last_contact=s.last_contact,
                 latitude=s.latitude, longitude=s.longitude, reasons=reasons,
                 ml_anomaly_score=scored.ml_anomaly_score, squawk=s.squawk)


def newest_scored(scored: list[ScoredState], encoded: list[bytes],
                  stored: dict[str, AircraftEntry]) -> dict[str, dict | orjson.Fragment | None]:
    """Per aircraft, its newest scored state (by event time) of the batch (as its encoded record,
    ``encoded[i]`` of ``scored[i]``) or of the table: what ``/aircraft/{icao24}/`` shows. A replayed
    older state does not replace a newer one, nor does a repeat of the newest (OpenSky repeats a state
    in later polls; a replay or a retry sends it again): the first copy stays, scored when it was new,
    so the answer does not depend on how the copies fell into batches or how far a replay has got."""
    newest: dict[str, dict | orjson.Fragment | None] = {}
    newest_time: dict[str, int | None] = {}
    for icao24, entry in stored.items():
        last = entry.last
        newest[icao24], newest_time[icao24] = last, None if last is None else event_time_of(last["state"])
    for item, record in zip(scored, encoded, strict=True):
        icao24, when = item.state.icao24, item.state.event_time
        current = newest_time.get(icao24)
        if current is None or when > current:
            newest[icao24], newest_time[icao24] = orjson.Fragment(record), when
    return newest


class ScoringStage:
    """The scoring stage of this worker: its model, alert channels and counters, and the aircraft stage of the
    windows it runs in the same batch. The web layer reads ``registry`` and ``stats``."""

    def __init__(self, app: AppT, settings: Settings, windows: WindowStage):
        self.app, self.settings, self.windows = app, settings, windows
        self.registry = ModelRegistry(settings.model_path)
        self.channels = alert_channels(settings)  # the webhook, e-mail: as the settings ask
        self.stats = StageMetrics(SCORER_METRICS)

    async def load_model(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.registry.load_initial)
        except ModelError as error:
            log.error("Cannot score without a model: %s", error)
            raise SystemExit(f"flights-app: {error}") from None
        # Everything loaded so far (modules, the model and its compiled scorer) lives as long as the
        # worker: kept out of the collector's full passes, which otherwise walk it every time.
        gc.collect()
        gc.freeze()

    async def watch_model(self) -> None:
        """A new model file (with its manifest) is picked up between batches; a bad one is refused."""
        if self.registry.current is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.registry.reload)

    async def score_states_of(self, partition: int, event, states: list[StateVector], outbox: Outbox,
                              writes: TableWrites) -> None:
        """Score ``states`` of one partition (the last of them came in ``event``), write each aircraft's
        entry once (its last states and its windows), and send everything; wait for the acknowledgements
        once the batch has ``IN_FLIGHT_MAX`` records on their way (its memory stays bounded)."""
        windows = self.windows
        with partition_of(event):
            entries = {icao24: AircraftEntry.from_stored(read(aircraft, icao24, partition))
                       for icao24 in dict.fromkeys(s.icao24 for s in states)}
            memories = {icao24: memory_of(entry) for icao24, entry in entries.items()}
            scored, updated = score_batch(self.registry.current, states, memories)
            encoded = [encode(item) for item in scored]  # once: the output record and the table's "last"
            await self.publish_scored(scored, encoded, outbox)  # first: what the latency is measured to
            partials = windows.count_in_windows(partition, scored, entries)  # the windows' field
            newest = newest_scored(scored, encoded, entries)
            for icao24, entry in entries.items():  # the model's field and the scoring's
                memory = updated.get(icao24) or memories[icao24]
                entry.memory = memory.as_dict() if memory else None
                entry.last = newest[icao24]
            # one write per aircraft per batch: its memory, last state and windows together
            await writes.put_many(aircraft, ((icao24, entry.stored()) for icao24, entry in entries.items()), partition)
        await windows.send_partials(outbox, partition, partials)
        if len(outbox) >= IN_FLIGHT_MAX:
            await outbox.sent()
            writes.persist_offsets()

    async def publish_scored(self, scored: list[ScoredState], encoded: list[bytes], outbox: Outbox) -> None:
        """Hand each scored state (``encoded[i]`` of ``scored[i]``) to flight-processed-data, and what pages
        to flight-alerts and the alert channels."""
        alert_threshold = self.registry.current.alert_threshold
        keyed = [(item.state.icao24.encode(), record) for item, record in zip(scored, encoded, strict=True)]
        await outbox.send_many(processed_states.get_topic_name(), keyed)
        faults = paged = anomalies = 0
        for item in scored:
            faults += bool(item.data_faults)
            alert = alert_for(item, alert_threshold, self.settings.alert_score)
            if alert is not None:
                await outbox.send(alerts, alert.icao24, alert)
                paged += 1
                for channel in self.channels:
                    channel.offer(alert.icao24, alert.asdict())
            anomalies += item.ml_is_anomaly
        self.stats.inc("data_faults", faults)
        self.stats.inc("alerts", paged)
        self.stats.inc("anomalies", anomalies)

    async def score_events(self, events) -> None:
        """One micro-batch of flight-raw-data: decode, reject what is not a state, score per partition;
        every output and table change acknowledged before the batch's offsets commit."""
        while self.registry.current is None:  # the model loads at start, in the background
            await asyncio.sleep(0.05)
        self.windows.recover_watermarks()  # after a start, before the first state is judged late or expired
        started = time.perf_counter()
        outbox = Outbox(self.app)
        writes = TableWrites(outbox)
        batch_max = self.settings.score_batch_max
        count = 0  # states (a message of flight-raw-data holds a batch of them, or one)
        for group in by_partition(events):
            partition = group[0].message.partition
            chunk = Chunk(batch_max, CHUNK_AIRCRAFT_MAX)
            for i, event in enumerate(group):
                message = event.message
                valid, invalid = decode_raw(message.value, message.key, message.topic, partition, message.offset,
                                            self.settings.topic_partitions)
                chunk.add(valid)
                for rejected in invalid:  # not a state: counted, sent on with its reason
                    rejections.note(message.topic, rejected)
                    await outbox.send(invalid_states, rejected.icao24 or "", rejected)
                count += len(valid) + len(invalid)
                if chunk.states and (chunk.full() or i == len(group) - 1):
                    await self.score_states_of(partition, event, chunk.take(), outbox, writes)
        await outbox.sent()  # every output and table change acknowledged before the batch's offsets commit
        writes.persist_offsets()
        took_s = time.perf_counter() - started
        self.stats.inc("batches")
        self.stats.inc("events", count)
        self.stats.set("last_batch_size", count)
        self.stats.set("last_batch_ms", took_s * 1000)
        scorer_batch_size.observe(count)
        scorer_batch_seconds.observe(took_s)


#: The scoring stage of this worker (the one object holding its state).
stage = ScoringStage(app, settings, window_stage)


@app.task
async def load_model() -> None:
    await stage.load_model()


if stage.channels:

    @app.task
    async def send_alerts() -> None:
        await asyncio.gather(*(channel.run() for channel in stage.channels))


if settings.model_watch_s > 0:

    @app.timer(settings.model_watch_s)
    async def watch_model() -> None:
        await stage.watch_model()


@app.agent(raw_states)
async def score_states(stream):
    async for events in stream.take_events(settings.score_batch_max, within=settings.score_batch_within_s):
        await stage.score_events(events)
