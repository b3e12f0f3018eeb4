"""``GET /metrics``: Prometheus text format.

Faust's own Prometheus sensor (``faust.sensors.prometheus.setup_prometheus_sensors``:
messages in and out per topic and partition, table operations, send latency,
rebalances, committed and end offsets, HTTP) and, on the same registry, the
app's counters read from the agents at scrape time, plus consumer lag.
"""

from __future__ import annotations

from collections.abc import Iterator

from faust.sensors.prometheus import setup_prometheus_sensors
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agents import scoring, windows
from agents.source import OpenSkySourceService
from flights_app.app import app
from flights_app.metrics import registry
from web.health import consumer_lag


def _counter(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels or ()))
    family.add_metric(list((labels or {}).values()), value)
    return family


class AppCollector(Collector):
    """The source, scorer and window counters of this worker, and its consumer lag per partition."""

    def collect(self) -> Iterator:
        service = OpenSkySourceService.instance
        source = service.source.stats if service and service.source else None
        if source is not None:
            yield _counter("flights_source_polls", "OpenSky polls made", source.polls)
            yield _counter("flights_source_states", "State vectors received from OpenSky", source.states_received)
            yield _counter("flights_source_valid", "Valid states published to flight-raw-data", source.valid)
            invalid = CounterMetricFamily("flights_source_invalid", "States rejected to flight-invalid-data",
                                          labels=["reason"])
            for reason, n in sorted(source.invalid.items()):
                invalid.add_metric([reason], n)
            yield invalid
            failures = CounterMetricFamily("flights_source_poll_failures", "Failed polls", labels=["kind"])
            for kind, n in sorted(source.failures.items()):
                failures.add_metric([kind], n)
            yield failures
        s = scoring.stats
        yield _counter("flights_scored_states", "States scored and published to flight-processed-data", s.events)
        yield _counter("flights_anomalies", "States the model flagged as anomalous", s.anomalies)
        yield _counter("flights_alerts", "Alerts published to flight-alerts", s.alerts)
        w = windows.stats
        yield _counter("flights_window_states", "States seen by the window stage", w.states)
        yield _counter("flights_duplicates_dropped", "Repeated state vectors not counted again",
                       w.duplicates_dropped)
        yield _counter("flights_late_events", "States later than the window grace (reported, not averaged)",
                       w.late_events)
        yield _counter("flights_expired_events", "States older than the window expiry (not windowed)",
                       w.expired_events)
        yield _counter("flights_window_records", "Window updates published to flight-aggregated-data",
                       w.records_published)
        yield _counter("flights_window_finals", "Final window records published", w.finals_published)
        yield _counter("flights_windows_expired", "Window table entries deleted after expiry", w.windows_expired)
        lag = GaugeMetricFamily("flights_consumer_lag", "Messages not yet committed, by topic and partition",
                                labels=["topic", "partition"])
        for (topic, partition), n in sorted(consumer_lag().items()):
            lag.add_metric([topic, str(partition)], n)
        yield lag


registry.register(AppCollector())
setup_prometheus_sensors(app, pattern="/metrics", registry=registry, name_prefix="faust")
