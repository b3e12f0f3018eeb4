"""The base names of the app's topics (before FLIGHTS_TOPIC_PREFIX); importable without the app."""

RAW = "flight-raw-data"
INVALID = "flight-invalid-data"
PROCESSED = "flight-processed-data"
AGGREGATED = "flight-aggregated-data"
ALERTS = "flight-alerts"
WINDOW_PARTIALS = "flight-window-partials"  # internal: per-aircraft window partials, keyed by country/airline
