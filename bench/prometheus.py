"""A real Prometheus server for the chaos soak, run with the shipped configuration
(``monitoring/prometheus/prometheus.yml`` and its ``alerts.yml``): its scrape and evaluation intervals,
its job and its rules unchanged; only how the workers are found differs (a file the soak rewrites when
it scales, instead of the compose network's DNS). The binary is Debian's, unpacked by ``make install``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from tests.harness import ROOT, free_port, http_json, wait_until

SHIPPED = ROOT / "monitoring" / "prometheus"


def binary() -> Path | None:
    here = Path(sys.executable).parent / "prometheus"
    found = here if here.exists() else shutil.which("prometheus")
    return Path(found) if found else None


def write_config(folder: Path, targets: Path) -> tuple[str, float]:
    """The shipped ``prometheus.yml`` and ``alerts.yml`` into ``folder``, the workers found in the file
    ``targets`` (file service discovery) instead of the compose network's DNS; returns the job's name and
    the scrape interval (seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((SHIPPED / "prometheus.yml").read_text())
    shutil.copy(SHIPPED / "alerts.yml", folder / "alerts.yml")
    # The workers' job only: the soak runs no history writer.
    (job,) = config["scrape_configs"] = [j for j in config["scrape_configs"] if j["job_name"] == "flights-worker"]
    job.pop("dns_sd_configs")
    job["file_sd_configs"] = [{"files": [str(targets)], "refresh_interval": "5s"}]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    return job["job_name"], float(config["global"]["scrape_interval"].rstrip("s"))


class Prometheus:
    def __init__(self, tmp: Path):
        exe = binary()
        if exe is None:
            raise RuntimeError("prometheus is not installed: `rm -f .venv/bin/promtool && make install` unpacks it "
                               "from Debian's prometheus package")
        self.dir = tmp / "prometheus"
        self.targets = self.dir / "workers.json"
        self.job, self.interval_s = write_config(self.dir, self.targets)
        self.set_targets([])
        self.port = free_port()
        self.log = open(self.dir / "prometheus.log", "ab")
        self.process = subprocess.Popen(
            [str(exe), f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(self._ready, 60, "Prometheus to be ready", 0.2)
        self.started = time.time()

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{(self.dir / 'prometheus.log').read_text()[-3000:]}")
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2).status == 200
        except OSError:
            return False

    def set_targets(self, addresses: list[str]) -> None:
        """The workers to scrape now (``host:port``), written atomically (Prometheus watches the file)."""
        tmp = self.targets.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": sorted(addresses)}] if addresses else []))
        tmp.replace(self.targets)

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict]:
        query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step_s})
        answer = http_json(f"http://127.0.0.1:{self.port}/api/v1/query_range?{query}", timeout_s=30)
        return answer["data"]["result"]

    def alerts(self, end: float) -> list[dict]:
        """Each alert (name and instance) that was pending or firing during the run: when it first fired,
        when it was last seen firing, and whether it still fires at ``end``."""
        step = self.interval_s
        found: dict[tuple, dict] = {}
        for series in self.query_range("ALERTS", self.started, end, step):
            labels = series["metric"]
            key = (labels["alertname"], labels.get("instance", ""), labels.get("topic", ""))
            times = [float(t) for t, _ in series["values"]]
            entry = found.setdefault(key, {"alert": key[0], "instance": key[1] or None, "topic": key[2] or None,
                                           "pending_from_s": None, "fired_at_s": None, "last_firing_s": None})
            rel = [round(t - self.started) for t in times]
            if labels["alertstate"] == "pending":
                entry["pending_from_s"] = rel[0] if entry["pending_from_s"] is None else entry["pending_from_s"]
            else:
                entry["fired_at_s"], entry["last_firing_s"] = rel[0], rel[-1]
        last_step = round(end - self.started) - 2 * step
        for entry in found.values():
            entry["resolved"] = entry["last_firing_s"] is None or entry["last_firing_s"] < last_step
        return sorted(found.values(), key=lambda e: (e["pending_from_s"] or 0, e["alert"]))

    def down_spells(self, end: float) -> dict[str, list[list[int]]]:
        """Per scraped instance: the spells (seconds from Prometheus's start) its ``up`` was 0."""
        spells: dict[str, list[list[int]]] = {}
        for series in self.query_range(f'up{{job="{self.job}"}}', self.started, end, self.interval_s):
            runs: list[list[int]] = []
            for t, value in series["values"]:
                rel = round(float(t) - self.started)
                if value == "0":
                    if runs and runs[-1][1] >= rel - self.interval_s - 1:
                        runs[-1][1] = rel
                    else:
                        runs.append([rel, rel])
            spells[series["metric"]["instance"]] = runs
        return spells

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
