"""``GET /health``: is this worker doing its job? 200 when it is, 503 with the reasons when not.

- broker: a metadata request answered within 2 s (not merely a connection once made);
- recovery: tables recovered from their changelogs, no rebalance in progress;
- model: the scorer has a model;
- membership: the Kafka group generation it joined, its static member id, the partitions it holds;
- lag: messages of the app's input topics not yet committed, per topic (reported, not judged:
  a burst is not a failure; watch it in /metrics).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from faust import web

from agents.scoring import stage as scoring
from flights_app.app import app, settings
from flights_app.faust_internals import committed_offset, producer_client
from flights_app.topics import ALL_TOPICS, raw_states

BROKER_TIMEOUT_S = 2.0
_INPUTS = {topic.get_topic_name() for topic in ALL_TOPICS}


def consumer_lag() -> dict[tuple[str, int], int]:
    """(topic, partition) -> end offset minus committed offset, for the input partitions this worker holds."""
    monitor = app.monitor
    try:
        assigned = app.consumer.assignment()
    except Exception:  # not started, or stopping
        return {}
    lag = {}
    for tp in assigned:
        if tp.topic not in _INPUTS:
            continue
        try:  # the broker's high watermark as of the last fetch (known even when nothing came)
            highwater = app.consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - not fetched from yet, or being revoked
            highwater = None
        ends = [e for e in (monitor.tp_end_offsets.get(tp), highwater) if e is not None]
        if not ends:
            continue
        committed = committed_offset(app.consumer, tp)  # from the broker at assignment, then ours
        if committed is None:
            committed = monitor.tp_committed_offsets.get(tp)
        lag[(tp.topic, tp.partition)] = max(0, max(ends) - (committed or 0))
    return lag


def held_partitions() -> list[int]:
    """The partitions of flight-raw-data this worker holds (empty before its first assignment)."""
    try:
        return sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == raw_states.get_topic_name())
    except Exception:  # noqa: BLE001 - the consumer is not up yet
        return []


async def broker_status() -> dict:
    try:
        client = producer_client(app)
        metadata = await asyncio.wait_for(client.fetch_all_metadata(), BROKER_TIMEOUT_S)
        return {"connected": True, "brokers": len(metadata.brokers())}
    except TimeoutError:
        return {"connected": False, "error": f"no metadata answer within {BROKER_TIMEOUT_S:g} s"}
    except Exception as error:  # noqa: BLE001 - any failure is "not connected", said in one line
        return {"connected": False, "error": f"{type(error).__name__}: {error}"[:200]}


async def health(self: web.View, request: web.Request) -> web.Response:
    broker = await broker_status()
    recovered = app.tables.recovery.completed.is_set() and not app.in_recovery and not app.rebalancing
    lag_by_topic: dict[str, int] = defaultdict(int)
    for (topic, _), n in consumer_lag().items():
        lag_by_topic[topic] += n
    problems = []
    if not broker["connected"]:
        problems.append("broker not reachable")
    if not recovered:
        problems.append("tables recovering or rebalancing")
    if scoring.registry.current is None:
        problems.append("no model loaded")
    body = {"status": "ok" if not problems else "unhealthy", "problems": problems, "broker": broker,
            "recovery_done": recovered, "model_loaded": scoring.registry.current is not None,
            # The group's generation this worker last joined (a rebalance makes a new one), its static
            # member id, and the partitions of flight-raw-data it holds.
            "membership": {"generation": app.consumer_generation_id, "worker_id": settings.worker_id,
                           "partitions": held_partitions()},
            "lag": {"total": sum(lag_by_topic.values()), "by_topic": dict(lag_by_topic)}}
    return self.json(body, status=200 if not problems else 503)


app.page("/health")(health)
