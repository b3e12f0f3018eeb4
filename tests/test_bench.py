"""`python -m bench --quick` keeps working: a well-formed report, and nothing left running.

Speeds are not asserted (tests assert behaviour; `make bench` measures).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.harness import PYTHON, ROOT

pytestmark = pytest.mark.kafka


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            blob = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in blob:
            found.append(int(proc.name))
    return found


def test_quick_bench_writes_a_well_formed_report_and_stops_what_it_started(tmp_path):
    out = tmp_path / "results"
    run = subprocess.run([PYTHON, "-m", "bench", "--quick", "--out", str(out)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    report = json.loads((out / "bench.json").read_text())
    assert report["quick"] is True
    kafka = report["kafka"]
    for key in ("produce_per_s", "consume_per_s", "relay_per_s"):
        assert kafka["ceiling"][key] > 0
    for run_ in (kafka["throughput_1"], kafka["throughput_2"]):
        assert run_["totals_exact"] is True  # the window totals equalled the workload's distinct counts
        assert run_["scored_per_s"] > 0 and run_["windowed_per_s"] > 0
    assert kafka["throughput_2"]["workers"] == 2
    for run_ in kafka["latency"]:
        assert run_["kept_up"], run_  # tiny rates: every state scored
        assert run_["to_processed"]["n"] == run_["sent"]
        pct = run_["to_processed"]
        assert 0 < pct["p50_ms"] <= pct["p95_ms"] <= pct["p99_ms"] <= pct["max_ms"]
        assert run_["to_window"]["n"] > 0
    assert kafka["memory"]["totals_exact"] is True and kafka["memory"]["peak_rss_mb"] > 0
    assert kafka["growth"]["rss_end_mb"] > 0
    assert [r["batch"] for r in report["scorer"]["rows"]] == [1, 10, 100, 1000, 10000]
    assert {t["reached"] for t in report["targets"]} <= {"yes", "NO", "n/a"}
    assert len(report["targets"]) == 14
    writer = kafka["history_writer"]  # the history writer kept every scored record of the one-worker run
    assert writer["records"] > writer["states_kept"] > 0 and writer["records_per_s"] > 0  # + window records
    assert writer["states_kept"] <= kafka["throughput_1"]["states"] and writer["bytes_per_state"] > 0
    day, queries = report["history"]["day"], report["history"]["queries"]
    assert day["states"] == day["aircraft"] * day["hours"] * 3600 // day["every_s"] and day["bytes_per_state"] > 0
    for question in ("area", "aircraft"):  # every question answered with rows (the bench refuses an empty one)
        assert queries[question]["n"] > 0 and queries[question]["mean_rows"] > 0
        assert 0 < queries[question]["p50_ms"] <= queries[question]["p95_ms"] <= queries[question]["max_ms"]
    producer = kafka["producer"]  # each producer setting measured on the scored records
    assert {r["compression"] for r in producer["rows"]} >= {"none", "gzip", "lz4", "zstd"}
    for row in producer["rows"]:
        assert row["records_per_s"] > 0 and row["stored_bytes_per_record"] > 0, row
    by_setting = {r["setting"]: r for r in producer["rows"]}  # compression stores fewer bytes
    assert by_setting["lz4, linger "
                      "5"]["stored_bytes_per_record"] < by_setting["none, linger 5"]["stored_bytes_per_record"]

    table = (out / "bench.md").read_text()
    assert "| measurement | figure | conditions |" in table
    assert "| target | wanted | measured | reached |" in table
    assert "QUICK" in table
    assert table.strip() in run.stdout  # printed as well as written

    # Every worker (FLIGHTS_APP_ID=bench-...) and the broker (its data under flights-bench-...) stopped.
    assert processes_mentioning("FLIGHTS_APP_ID=bench-") == []
    assert processes_mentioning("flights-bench-") == []


def test_window_latency_is_attributed_only_to_states_the_windows_count():
    """A repeated state (same aircraft and event time) is not counted by the windows, so the bench's
    attribution by count must leave it out: counted in, a window's count n would be read as the first
    n states sent including the repeat, and the last state counted would seem to wait for the next
    record (the 19-s p99 `make bench` printed until 2026-12-01 came from this)."""
    from bench.pipeline import WINDOW_S, Observer

    observer = Observer(None, "processed", "aggregated", 1)
    state = {"icao24": "abc123", "origin_country": "Utopia", "time_position": 6000, "last_contact": 6001}
    observer.sent(state, ingest_time=10.0)
    observer.sent(dict(state), ingest_time=11.0)  # the same state again: not counted by the windows
    observer.sent({**state, "time_position": 6005}, ingest_time=12.0)
    record = {"dimension": "country", "name": "Utopia", "window_start": 6000 // WINDOW_S * WINDOW_S}
    observer.window_record({**record, "events": 1}, now=13.0)
    assert observer.windowed == [3.0]
    observer.window_record({**record, "events": 2}, now=15.0)
    assert observer.windowed == [3.0, 3.0]  # the second distinct state was sent at 12.0, not 11.0
    observer.window_record({**record, "events": 2}, now=20.0)  # a record counting nothing new
    observer.window_record({**record, "dimension": "airline", "events": 9}, now=21.0)
    assert observer.windowed == [3.0, 3.0]


def test_the_soaks_rss_growth_leaves_out_lives_that_scored_nothing():
    """With restarts every 60 s, a worker restarted after a kill -9 can wait out the dead worker's
    session and be restarted again before it scores anything: its RSS (no work loaded) is no base
    for growth. Lives that scored are compared, second to last; growth among them still fails."""
    from bench.soak import _rss_growth

    def life(t0: int, rss: float, scored_from: int, scored_to: int) -> list[dict]:
        return [{"t_s": t0 + 10, "rss_mb": rss, "scored": scored_from},
                {"t_s": t0 + 50, "rss_mb": rss, "scored": scored_to}]

    restarts = [{"t_s": t} for t in (60, 120, 180)]
    samples = life(0, 340, 0, 50) + life(60, 250, 50, 50) + life(120, 400, 50, 90) + life(180, 390, 90, 130)
    growth = _rss_growth(samples, restarts)
    assert growth["per_life_end_mb"] == [340, 250, 400, 390]
    assert growth["working_life_end_mb"] == [340, 400, 390] and growth["growth_pct"] == -2.5
    leaking = samples[:-1] + [{"t_s": 230, "rss_mb": 480, "scored": 130}]
    assert _rss_growth(leaking, restarts)["growth_pct"] == 20.0
