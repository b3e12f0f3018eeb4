"""The operators' view (monitoring/): Prometheus's configuration and alert rules pass promtool and
fire on the series they are meant for; Grafana's provisioning and dashboard are well formed and
mounted by the compose file. That every metric they name is declared by a running worker's
/metrics is checked against a real worker in tests/test_window_pipeline.py (check_worker_endpoints)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.monitoring import (
    DASHBOARD,
    MONITORING,
    PROMETHEUS,
    RULES,
    expressions,
    metric_names,
    missing_from,
)
from tests.test_deploy import resolved

PROMTOOL = Path(sys.executable).parent / "promtool"


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    exe = PROMTOOL if PROMTOOL.exists() else shutil.which("promtool")
    assert exe, "promtool is not installed: `make install` unpacks it from Debian's prometheus package"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_configuration_and_the_rules_and_refuses_a_broken_rule(tmp_path):
    result = promtool("check", "config", "prometheus.yml")  # checks the rule files it names too
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "9 rules found" in result.stdout, result.stdout
    broken = tmp_path / "alerts.yml"
    broken.write_text(RULES.read_text().replace("deriv(flights_consumer_lag[5m])", "deriv(flights_consumer_lag[5m]", 1))
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0 and "parse error" in (result.stdout + result.stderr).lower()


def test_each_alert_fires_on_the_series_it_is_for_and_stays_quiet_on_a_healthy_worker(tmp_path):
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    # The unit tests can fail: with the lag rule's 5 minutes made 15, its expected alert is missing.
    for name in ("alerts.yml", "alerts.test.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    rules = yaml.safe_load((tmp_path / "alerts.yml").read_text())
    lag = next(r for r in rules["groups"][0]["rules"] if r["alert"] == "FlightsConsumerLagGrowing")
    lag["for"] = "15m"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    result = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert result.returncode != 0 and "FlightsConsumerLagGrowing" in result.stdout + result.stderr


def test_every_alert_has_a_severity_a_summary_and_a_unit_test():
    rules = [r for group in yaml.safe_load(RULES.read_text())["groups"] for r in group["rules"]]
    tested = {t["alertname"] for case in yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
              for t in case["alert_rule_test"] if t.get("exp_alerts")}
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    # Every alert but the one that needs a worker without a model is shown firing in alerts.test.yml.
    assert {r["alert"] for r in rules} - tested == {"FlightsNoModel"}


def test_the_grafana_dashboard_is_well_formed_and_reads_the_provisioned_datasource():
    dashboard = json.loads(DASHBOARD.read_text())
    datasources = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids are unique"
    cells = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == source["uid"] and panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"] and metric_names(target["expr"]), target
    titles = " ".join(p["title"].lower() for p in panels)
    for wanted in ("states per second", "consumer lag", "polls", "credits", "batch size", "batch time",
                   "anomalies and alerts", "window records", "late", "memory", "rebalances"):
        assert wanted in titles, wanted
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/flights-app.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"


def test_the_compose_file_runs_prometheus_and_grafana_pinned_on_loopback_with_the_files_mounted():
    services = resolved()["services"]
    for name, port in (("prometheus", 9090), ("grafana", 3000)):
        service = services[name]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", service["image"]), service["image"]  # a pinned version
        assert [str(p).removesuffix("/tcp") for p in service["ports"]] == [f"127.0.0.1:{port}:{port}"]
        assert service["healthcheck"]["test"][0] == "CMD"
        for volume in service["volumes"]:
            source = str(volume).split(":")[0]
            if source.startswith("/") or source.startswith("."):
                assert Path(source).exists() and Path(source).resolve().is_relative_to(MONITORING), volume
    mounts = {str(v).split(":")[1]: Path(str(v).split(":")[0]) for v in services["grafana"]["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == MONITORING / "grafana/provisioning"
    assert mounts["/etc/grafana/dashboards"] == MONITORING / "grafana/dashboards"
    # Prometheus finds every replica of the worker by DNS, on the port the worker exposes.
    # So is the history writer's.
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"flights-worker", "flights-history"}
    for job_name, service in (("flights-worker", "worker"), ("flights-history", "history-writer")):
        (dns,) = jobs[job_name]["dns_sd_configs"]
        assert dns["names"] == [service] and str(dns["port"]) in {str(p) for p in services[service]["expose"]}
        assert jobs[job_name]["metrics_path"] == "/metrics"
    writer = services["history-writer"]
    assert writer["command"] == ["flights-app", "history-writer"] and writer["environment"]["FLIGHTS_HISTORY_DIR"] \
        == services["worker"]["environment"]["FLIGHTS_HISTORY_DIR"] == "/history"
    assert any(str(v).startswith("history:/history") for v in writer["volumes"])
    assert any(str(v).startswith("history:/history") for v in services["worker"]["volumes"])
    assert all(re.search(r'job="flights-(worker|history)"', e) for e in expressions().values()
               if "up{" in e or "process_" in e)


def test_a_metric_the_worker_does_not_declare_is_reported_with_where_it_is_named():
    page = "# HELP flights_consumer_lag lag\n# TYPE flights_consumer_lag gauge\n"
    missing = missing_from(page)
    assert "alert FlightsConsumerLagGrowing" not in missing
    assert missing["alert FlightsModelRefused"] == {"flights_model_refused"}
    assert missing["panel 'Resident memory, by worker' A"] == {"process_resident_memory_bytes"}


@pytest.mark.parametrize("expr, names", [
    ('sum by (topic) (rate(faust_messages_received_per_topic_total[1m]))', {"faust_messages_received_per_topic_total"}),
    ('histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y(z"}[5m])))', {"a_bucket"}),
    ('a > 1e9 and on (instance) b offset 5m', {"a", "b"}),
    ('absent(up{job="flights-worker"} == 1)', {"up"}),
])
def test_the_metric_names_of_an_expression(expr, names):
    assert metric_names(expr) == names
