"""What the monitoring files name (the Grafana dashboard's queries, the Prometheus alert rules) and
what a worker's ``/metrics`` declares, so tests can hold one against the other."""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import ROOT

MONITORING = ROOT / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "flights-app.json"
PROMETHEUS = MONITORING / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
#: Series Prometheus records itself for every target it scrapes: no worker exposes them.
PROMETHEUS_OWN = {"up"}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
             "summary": ("_sum", "_count", "_created")}


def expressions() -> dict[str, str]:
    """Every PromQL expression of the dashboard and the alert rules, by where it is."""
    found = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", ()):
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            found[f"alert {rule['alert']}"] = rule["expr"]
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, labels and durations left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", expr):
        if match.group() not in _KEYWORDS and not expr[match.end():].lstrip().startswith("("):
            names.add(match.group())
    return names


def exposed_names(text: str) -> set[str]:
    """Every series name a /metrics page declares, with the suffixes Prometheus stores its types under
    (a counter family ``x`` is stored as ``x_total``; a histogram's as ``x_bucket``, ``x_sum``, ``x_count``),
    whether or not the family has a sample yet (a labelled counter before its first event)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def exposed_samples(text: str) -> dict[str, float]:
    """The samples of a /metrics page without labels, by name."""
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if not sample.labels}


#: The history writer's metrics (its own /metrics: flights-app history-writer); every other is a worker's.
HISTORY_PREFIX = "flights_history_"


def missing_from(text: str, exporter: str = "worker") -> dict[str, set[str]]:
    """The metrics each dashboard query or alert rule names that the /metrics page of ``exporter``
    (``worker`` or ``history-writer``) should declare and does not."""
    exposed = exposed_names(text) | PROMETHEUS_OWN
    missing = {}
    for where, expr in expressions().items():
        names = {n for n in metric_names(expr) if n.startswith(HISTORY_PREFIX) == (exporter == "history-writer")}
        if names - exposed:
            missing[where] = names - exposed
    return missing
