"""The base names of the app's topics (before FLIGHTS_TOPIC_PREFIX) and how their keys are made; importable
without the app (no Faust, no Kafka client)."""

RAW = "flight-raw-data"
INVALID = "flight-invalid-data"
PROCESSED = "flight-processed-data"
AGGREGATED = "flight-aggregated-data"
ALERTS = "flight-alerts"
WINDOW_PARTIALS = "flight-window-partials"  # internal: per-aircraft window partials, keyed by country/airline

#: Separates the partitioning part of a table key from the rest (flights_app/partitioner.py).
KEY_SEP = "@"
