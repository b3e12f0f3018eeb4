"""``GET /metrics``: Prometheus text format.

- The stages' counters: each a prometheus_client metric (``flights_app.metrics.StageMetrics``),
  registered here.
- What is read at scrape time (``AppCollector``): the model's state, OpenSky's credits left,
  consumer lag.
- Faust's figures (``FaustCollector``), from the Monitor it keeps anyway: messages in per topic,
  events, table operations, commit and send latency, rebalances, committed and end offsets.
  Faust's own Prometheus sensor (``setup_prometheus_sensors``) is not installed: it updates
  labelled metrics on every event and table access, about 7% of the worker's time at full load
  (py-spy).
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
    """What is read at scrape time: the model's state, the credits OpenSky last said are left, and the
    consumer lag per partition. (The stages' counters are prometheus metrics of their own: below.)"""

    def collect(self) -> Iterator:
        credits = GaugeMetricFamily("flights_source_credits_remaining", "OpenSky API credits left, as its last "
                                    "answer said (X-Rate-Limit-Remaining; no sample until it says)")
        if source_stage.stats.credits_remaining is not None:
            credits.add_metric([], source_stage.stats.credits_remaining)
        yield credits
        model = scoring.registry
        yield GaugeMetricFamily("flights_model_loaded", "1 once a model is loaded and scoring",
                                value=int(model.current is not None))
        yield GaugeMetricFamily("flights_model_refused", "1 while the model file on disk is one a reload refused "
                                "(the worker goes on with the model it had)", value=int(model.refusing))
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
for counters in (source_stage.stats, scoring.stats, scoring.registry.counts, windows.stats, rejections,
                 commit_watchdog.detector):
    registry.register(counters)
for channel in scoring.channels:
    registry.register(channel.stats)
ProcessCollector(registry=registry)  # process_resident_memory_bytes, CPU seconds, open files
registry.register(FaustCollector())


@app.page("/metrics")
async def metrics(self: web.View, request: web.Request) -> web.Response:
    return self.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
