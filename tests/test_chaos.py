"""The chaos soak's own logic (bench/chaos.py, bench/prometheus.py), without running it: its schedule,
its verdict, and the Prometheus configuration it derives from the shipped one. The soak itself runs
outside `make test` (`make soak SOAK_ARGS=--chaos`, docs/reliability.md)."""

from __future__ import annotations

import collections

from bench.chaos import Expected, passed, schedule
from bench.prometheus import write_config
from tests.test_monitoring import promtool


def test_the_schedule_scales_up_kills_in_turn_with_every_second_on_an_emptied_directory_and_scales_down():
    steps = schedule(minutes=30, workers=3, every_s=60, outage_s=180)
    assert (steps[0].at_s, steps[0].action) == (60, "scale-up")
    assert (steps[-1].at_s, steps[-1].action) == (30 * 60 - 90, "scale-down")
    kills = [s for s in steps if s.action in ("kill", "kill-wipe", "outage")]
    assert [s.slot for s in kills] == [k % 3 for k in range(len(kills))]  # in turn
    assert [s.action == "kill-wipe" for s in kills] == [k % 2 == 1 for k in range(len(kills))]
    (outage,) = [s for s in steps if s.action == "outage"]
    (back,) = [s for s in steps if s.action == "restart"]
    assert back.slot == outage.slot and back.at_s == outage.at_s + 180
    assert all(b.at_s - a.at_s >= 60 for a, b in zip(kills, kills[1:], strict=False))
    after = [s for s in kills if s.at_s > outage.at_s]
    assert after and after[0].at_s >= back.at_s + 60  # one worker down at a time; the kills go on after it
    assert all(s.at_s + 60 <= steps[-1].at_s for s in kills)  # none just before the scale-down
    assert len(kills) == 23  # at 120, 180 and 240 s (the outage), then from 480 s (a minute after its end) to 1,620 s
    assert [s.action for s in schedule(minutes=5, workers=2, every_s=30, outage_s=0)].count("outage") == 0


def test_the_verdict_wants_every_distinct_raw_state_scored_and_counted_in_its_window():
    expected = Expected()
    a = {"icao24": "abc123", "origin_country": "France", "time_position": 1000, "last_contact": 1001}
    b = {**a, "time_position": 1010, "last_contact": 1011}
    other = {**a, "icao24": "def456", "origin_country": "Spain"}
    expected.on_raw({"kind": "states", "states": [a, b, other]})
    expected.on_raw(a)  # the same state again (a replay): counted once
    window = 1000 // 600 * 600
    assert expected.verdict() == (3, {("France", window): (0, 2), ("Spain", window): (0, 1)})
    for state in (a, b, other, a):
        expected.on_scored({"state": state})

    def record(name, events, late, emitted_at, final=False):
        expected.on_window({"dimension": "country", "name": name, "window_start": window, "events": events,
                            "late_events": late, "emitted_at": emitted_at, "final": final})

    record("France", 2, 0, 5.0, final=True)
    record("Spain", 1, 0, 5.0)
    assert expected.verdict() == (0, {})
    record("France", 1, 0, 4.0)  # an older record read later does not count
    assert expected.verdict() == (0, {})
    record("Spain", 1, 1, 6.0)  # a newer one counting one state too many does
    assert expected.verdict() == (0, {("Spain", window): (2, 1)})
    expected.on_window({"dimension": "airline", "name": "AFR", "window_start": window, "events": 9,
                        "late_events": 0, "emitted_at": 7.0, "final": False})  # other dimensions: not judged
    assert len(expected.verdict()[1]) == 1
    assert collections.Counter(expected.raw.values())[("France", window)] == 2


def test_the_prometheus_it_runs_has_the_shipped_rules_and_finds_workers_in_a_file(tmp_path):
    job, interval_s = write_config(tmp_path, tmp_path / "workers.json")
    (tmp_path / "workers.json").write_text('[{"targets": ["127.0.0.1:6066"]}]')
    assert (job, interval_s) == ("flights-worker", 15.0)
    assert (tmp_path / "alerts.yml").read_text() == (promtool_dir() / "alerts.yml").read_text()
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "9 rules found" in result.stdout + result.stderr


def promtool_dir():
    from bench.prometheus import SHIPPED

    return SHIPPED


def test_the_verdict_wants_flightsworkerdown_where_an_outage_took_place_and_only_there():
    def report(actions: list[str], alerts: list[dict]) -> dict:
        return {"lost": 0, "wrong_windows": {}, "windows_checked": 10, "outage_s": 180,
                "recording_rows_missing_from_the_source": None,
                "steps": [{"t_s": 60 * k, "action": a, "slot": 0} for k, a in enumerate(actions)],
                "resumption": {"per_step": [{"resume_s": 5.0} for _ in actions]}, "prometheus": {"alerts": alerts}}

    down = [{"alert": "FlightsWorkerDown", "fired_at_s": 390, "resolved": True}]
    short = ["scale-up", "kill", "kill-wipe", "kill", "scale-down"]  # 8 minutes: no room for the outage
    assert passed(report(short, [])) and passed(report(short, down))
    assert not passed(report(["scale-up", "kill", "kill-wipe", "outage", "restart", "scale-down"], []))
    assert passed(report(["scale-up", "kill", "kill-wipe", "outage", "restart", "scale-down"], down))
    assert not passed(report(short, [{**down[0], "resolved": False}]))  # an alert left firing
