"""``GET /metrics``: Prometheus text format, everything read at scrape time.

Faust's figures come from its built-in Monitor (messages in per topic, events,
table operations, commit and send latency, rebalances, committed and end
offsets), which it keeps anyway. Faust's own Prometheus sensor
(``setup_prometheus_sensors``) is not installed: it updates labelled metrics on
every event and table access, about 7% of the worker's time at full load
(measured with py-spy, issue #6). Then the app's counters, plus consumer lag.
"""

from __future__ import annotations

from collections.abc import Iterator

from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from agents import commit_watchdog
from agents.scoring import stage as scoring
from agents.source import stage as source_stage
from agents.windows import stage as windows
from flights_app.app import app
from flights_app.decode import rejections
from flights_app.metrics import registry
from flights_app.publish import sent_by_topic
from web.health import consumer_lag


def _counter(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels or ()))
    family.add_metric(list((labels or {}).values()), value)
    return family


class AppCollector(Collector):
    """The source, scorer and window counters of this worker, and its consumer lag per partition."""

    def collect(self) -> Iterator:
        source = source_stage.stats
        if source is not None:
            yield _counter("flights_source_polls", "OpenSky polls made", source.polls)
            yield _counter("flights_source_polls_ok", "OpenSky polls answered with states", source.polls_ok)
            yield GaugeMetricFamily("flights_source_consecutive_failures", "Failed polls since the last good one",
                                    value=source.consecutive_failures)
            credits = GaugeMetricFamily("flights_source_credits_remaining", "OpenSky API credits left, as its "
                                        "last answer said (X-Rate-Limit-Remaining; no sample until it says)")
            if source.credits_remaining is not None:
                credits.add_metric([], source.credits_remaining)
            yield credits
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
        yield _counter("flights_data_faults", "Scored states with a data fault (reports that cannot be true)",
                       s.data_faults)
        model = scoring.registry
        yield GaugeMetricFamily("flights_model_loaded", "1 once a model is loaded and scoring",
                                value=int(model.current is not None))
        yield GaugeMetricFamily("flights_model_refused", "1 while the model file on disk is one a reload refused "
                                "(the worker goes on with the model it had)", value=int(model.refusing))
        yield _counter("flights_model_reloads_refused", "Model reloads refused (bad file or manifest)",
                       model.refusals)
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
        yield _counter("flights_commit_stalls", "Partitions read again because their commits were stuck "
                       "(agents/commit_watchdog.py)", commit_watchdog.detector.unstuck)
        yield _counter("flights_commit_checks", "Partition checks the commit watchdog made",
                       commit_watchdog.detector.judged)
        rejected = CounterMetricFamily("flights_rejected_messages", "Malformed messages an agent rejected to "
                                       "flight-invalid-data, by input topic and reason", labels=["topic", "reason"])
        for (topic, reason), n in sorted(rejections.counts.items()):
            rejected.add_metric([topic, reason], n)
        yield rejected
        lag = GaugeMetricFamily("flights_consumer_lag", "Messages not yet committed, by topic and partition",
                                labels=["topic", "partition"])
        for (topic, partition), n in sorted(consumer_lag().items()):
            lag.add_metric([topic, str(partition)], n)
        yield lag


class FaustCollector(Collector):
    """Faust's Monitor, which counts as the worker runs, turned into metrics when scraped."""

    def collect(self) -> Iterator:
        m = app.monitor
        received = CounterMetricFamily("faust_messages_received_per_topic", "Messages received, by topic",
                                       labels=["topic"])
        for topic, n in sorted(m.messages_received_by_topic.items()):
            received.add_metric([topic], n)
        yield received
        sent = CounterMetricFamily("faust_messages_sent_per_topic", "Messages sent, by topic (Faust's sends "
                                   "and the agents' micro-batches)", labels=["topic"])
        totals = dict(m.messages_sent_by_topic)
        for topic, n in sent_by_topic.items():
            totals[topic] = totals.get(topic, 0) + n
        for topic, n in sorted(totals.items()):
            sent.add_metric([topic], n)
        yield sent
        yield _counter("faust_events", "Events processed by streams", m.events_total)
        yield GaugeMetricFamily("faust_events_active", "Events being processed", value=m.events_active)
        yield _counter("faust_rebalances", "Rebalances this worker took part in", m.rebalances or 0)
        for name, doc in (("keys_retrieved", "Table keys read"), ("keys_updated", "Table keys written"),
                          ("keys_deleted", "Table keys deleted")):
            family = CounterMetricFamily(f"faust_table_{name}", doc, labels=["table"])
            for table, state in sorted(m.tables.items()):
                family.add_metric([table], getattr(state, name))
            yield family
        for name, values in (("commit_latency", m.commit_latency), ("send_latency", m.send_latency)):
            family = GaugeMetricFamily(f"faust_{name}_seconds_max", f"Slowest recent {name.replace('_', ' ')}")
            family.add_metric([], max(values, default=0.0))
            yield family
        for name, offsets in (("committed_offset", m.tp_committed_offsets), ("end_offset", m.tp_end_offsets)):
            family = GaugeMetricFamily(f"faust_topic_partition_{name}", name.replace("_", " "),
                                       labels=["topic", "partition"])
            for tp, offset in sorted(offsets.items()):
                family.add_metric([tp.topic, str(tp.partition)], offset)
            yield family


registry.register(AppCollector())
ProcessCollector(registry=registry)  # process_resident_memory_bytes, CPU seconds, open files
registry.register(FaustCollector())


@app.page("/metrics")
async def metrics(self: web.View, request: web.Request) -> web.Response:
    return self.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
