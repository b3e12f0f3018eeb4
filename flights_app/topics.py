"""The app's Kafka topics, declared once.

Topics that carry per-aircraft state are keyed by icao24, so one aircraft's
states stay in order on one partition.
"""

from __future__ import annotations

from flights_app.app import app, settings
from flights_app.records import Alert, InvalidState, ScoredState
from flights_app.topic_names import AGGREGATED, ALERTS, INVALID, PROCESSED, RAW, WINDOW_PARTIALS

#: One week by default: long enough to replay after an outage, bounded so the disk stays bounded.
RETENTION_S = max(1, round(settings.retention_hours * 3600))


def _topic(base: str, value_type=None, *, consumed: bool = False):
    """A topic of the app. An agent's input topic (``consumed``) hands it raw bytes, which the
    agent decodes itself (flights_app.decode): a malformed message is then rejected with a reason
    instead of Faust's decoder throwing into the agent."""
    codec = {"key_serializer": "raw", "value_serializer": "raw"} if consumed else {}
    return app.topic(
        settings.topic_name(base),
        key_type=None if consumed else str,
        value_type=None if consumed else value_type,
        **codec,
        partitions=settings.topic_partitions,
        replicas=settings.topic_replication,
        retention=RETENTION_S,
    )


raw_states = _topic(RAW, consumed=True)  # StateVector JSON
invalid_states = _topic(INVALID, InvalidState)
processed_states = _topic(PROCESSED, ScoredState)
aggregated_stats = _topic(AGGREGATED)
alerts = _topic(ALERTS, Alert)
window_partials = _topic(WINDOW_PARTIALS, consumed=True)  # agents.windows: dicts

ALL_TOPICS = (raw_states, invalid_states, processed_states, aggregated_stats, alerts, window_partials)

# The worker creates these before it subscribes (flights_app.topic_admin).
