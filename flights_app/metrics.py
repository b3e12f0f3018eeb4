"""The app's Prometheus instruments that are observed where the work happens (one registry).

Counters that already live on the agents' stats objects are not duplicated
here: web/metrics.py reads them at scrape time.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

registry = CollectorRegistry(auto_describe=True)

scorer_batch_size = Histogram(
    "flights_scorer_batch_size", "States per scoring batch", registry=registry,
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000))
scorer_batch_seconds = Histogram(
    "flights_scorer_batch_seconds", "Time to score one batch, tables included", registry=registry,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
