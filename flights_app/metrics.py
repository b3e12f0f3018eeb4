"""The app's Prometheus metrics: every counter of every stage is a prometheus_client metric.

``registry`` is what ``GET /metrics`` exports. Each stage keeps its counters in a ``StageMetrics``
(its own registry, so a stage made twice, as tests do, never clashes) that the worker registers on
``registry``; the JSON endpoints (``/stats/windows/``, ``/model/``, ``/source/``, ...) and through
them the dashboard read the same values back with ``as_dict``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.registry import Collector

disable_created_metrics()  # no *_created series beside each counter: the process start time says the same
registry = CollectorRegistry(auto_describe=True)

scorer_batch_size = Histogram(
    "flights_scorer_batch_size", "States per scoring batch", registry=registry,
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000))
scorer_batch_seconds = Histogram(
    "flights_scorer_batch_seconds", "Time to score one batch, tables included", registry=registry,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


@dataclass(frozen=True)
class Metric:
    """One counter (or gauge) of a stage: the key the stage counts it by, its exported name (a counter's
    ends in ``_total`` when exported), what it counts, and its labels."""

    key: str
    name: str
    doc: str
    labels: tuple[str, ...] = ()
    gauge: bool = False


class StageMetrics(Collector):
    """A stage's counters and gauges, by key: ``inc``/``set`` them, read one as an attribute
    (``stats.polls``; a labelled one as ``{label value: count}``, or ``{(label values): count}`` with
    several labels) or all with ``as_dict``."""

    def __init__(self, metrics: Iterable[Metric]):
        self._own = CollectorRegistry(auto_describe=True)
        self._specs = {m.key: m for m in metrics}
        self._metrics = {key: (Gauge if m.gauge else Counter)(m.name, m.doc, labelnames=m.labels, registry=self._own)
                         for key, m in self._specs.items()}

    def inc(self, key: str, amount: float = 1, *labels: str) -> None:
        if amount:
            metric = self._metrics[key]
            (metric.labels(*labels) if labels else metric).inc(amount)

    def set(self, key: str, value: float, *labels: str) -> None:
        metric = self._metrics[key]
        (metric.labels(*labels) if labels else metric).set(value)

    def value(self, key: str):
        spec = self._specs[key]
        sample_name = spec.name if spec.gauge else f"{spec.name}_total"
        found = {}
        for family in self._metrics[key].collect():
            for sample in family.samples:
                if sample.name == sample_name:
                    value = int(sample.value) if sample.value == int(sample.value) else sample.value
                    if not spec.labels:
                        return value
                    labels = tuple(sample.labels[name] for name in spec.labels)
                    found[labels[0] if len(labels) == 1 else labels] = value
        return found if spec.labels else 0

    def __getattr__(self, key: str):
        if key.startswith("_") or key not in self._specs:
            raise AttributeError(key)
        return self.value(key)

    def as_dict(self) -> dict:
        return {key: self.value(key) for key in self._specs}

    def collect(self) -> Iterator:
        """For ``registry``: the stage's metrics as /metrics exports them."""
        yield from self._own.collect()
