"""The evaluation: its pieces on small cases, and the shipped model's figures as the docs print them."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flights_app.fake_opensky.anomalies import ANOMALY_KINDS
from ml import dataset, evaluate
from ml.dataset import Poll
from ml.features import N_FEATURES
from ml.rules import Flags

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
T = 1_700_000_000


def row(icao24, t, lat, lon, velocity=230.0, alt=10000.0, on_ground=False):
    return [icao24, "TST1    ", "X", t, t, lon, lat, None if on_ground else alt, on_ground, velocity, 90.0, 0.0, None,
            None, "1000", False, 0]


def test_injection_into_a_recording_is_labelled_deterministic_and_leaves_the_rest_alone():
    polls = [Poll(T + 5 * k, [row(f"{a:06x}", T + 5 * k, 50.0, 8.0 + 0.016 * k) for a in range(40)]
                  + [row("ground", T + 5 * k, 50.0, 8.0, velocity=5.0, on_ground=True)]) for k in range(60)]
    once = list(dataset.injected_polls(polls, seed=3, rate=0.1))
    again = list(dataset.injected_polls(polls, seed=3, rate=0.1))
    assert [p.rows for p in once] == [p.rows for p in again] and [p.labels for p in once] == [p.labels for p in again]
    labels = {key: kind for p in once for key, kind in p.labels.items()}
    assert 0.05 < len(labels) / (40 * 60) < 0.15 and set(labels.values()) == set(ANOMALY_KINDS)
    assert not any(icao24 == "ground" for icao24, _ in labels)  # only airborne states
    for original, injected in zip(polls, once, strict=True):
        for before, after in zip(original.rows, injected.rows, strict=True):
            kind = injected.labels.get((before[0], before[4]))
            assert (before != after) == (kind is not None)
            if kind == "frozen_position":  # the aircraft's own recorded position from 120-600 s before, if any
                assert before[3] - 600 <= after[3] <= before[3] - 120
                k = (after[3] - T) // 5
                assert after[5] == (polls[k].rows[0][5] if k >= 0 else before[5])
    assert polls[0].rows[0] == row("000000", T, 50.0, 8.0)  # the input is not changed


def scored(rows_flags_model):
    rows = [dataset.Row(state, np.zeros(N_FEATURES), flags, kind, poll) for state, flags, kind, poll,
            _ in rows_flags_model]
    verdicts = [None] * len(rows)
    model = np.array([m for *_, m in rows_flags_model], dtype=bool)
    return evaluate.Scored(rows, model, verdicts, np.zeros(len(rows), bool))


class S:
    """The few StateVector fields the evaluation reads."""

    def __init__(self, icao24, t, lat=50.0, lon=8.0, velocity=230.0):
        self.icao24, self.event_time, self.last_contact = icao24, t, t
        self.latitude, self.longitude, self.velocity, self.callsign = lat, lon, velocity, icao24


def test_injected_counts_each_methods_hits_and_shared_false_positives():
    none, fault = Flags([], []), Flags([], ["position jump: ..."])
    result = evaluate.injected(scored([
        (S("a", T), fault, "position_jump", T, True),   # both methods
        (S("b", T), none, "speed_spike", T, True),      # model only
        (S("c", T), fault, "speed_spike", T, False),    # rules only
        (S("d", T), none, "altitude_jump", T, False),   # missed
        (S("e", T), none, None, T, True),               # a model false positive
        (S("f", T), none, None, T, False),
    ]))
    d = result.as_dict()
    assert d["overall"]["model"] == {"tp": 2, "fp": 1, "fn": 2, "precision": 0.6667, "recall": 0.5, "f1": 0.5714}
    assert d["overall"]["rules"]["tp"] == 2 and d["overall"]["rules"]["fp"] == 0
    assert d["overall"]["both"]["tp"] == 3 and d["overall"]["both"]["fn"] == 1
    assert d["by_kind"]["speed_spike"]["model"] == {"tp": 1, "fp": 1, "fn": 1, "precision": 0.5, "recall": 0.5,
                                                    "f1": 0.5}


def test_the_jumping_steps_follow_the_data_readmes_definition():
    rows = scored([
        (S("a", T, lon=8.0), Flags([], []), None, T, False),
        (S("a", T + 5, lon=8.016), Flags([], []), None, T + 5, False),   # 230 m/s: no jump
        (S("a", T + 10, lon=8.5), Flags([], []), None, T + 10, False),   # ~7 km/s: a jump
        (S("a", T + 15, lon=8.048), Flags([], []), None, T + 15, False),  # back: judged against T + 5, no jump
        (S("a", T + 16, lon=8.6), Flags([], []), None, T + 16, False),   # 1 s apart: below 2 s, not judged
    ]).rows
    assert evaluate.jumping_steps(rows) == [2]


def test_episodes_merge_flags_a_minute_apart_and_hours_count_tracked_time():
    flags = [("a", T, "x"), ("a", T + 50, "x"), ("a", T + 200, "x"), ("b", T, "x"), ("a", T, "y")]
    assert evaluate.episodes(flags) == {"x": 3, "y": 1}
    rows = scored([(S("a", T + t), Flags([], []), None, T + t, False) for t in (0, 30, 60, 1000)]).rows
    assert evaluate.aircraft_hours(rows) == pytest.approx((30 + 30 + 60) / 3600)


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data beside the clone")
def test_the_shipped_models_figures_are_the_ones_the_docs_and_readme_print(tmp_path):
    """`make evaluate` again, from scratch: the tables it writes are the ones the page holds."""
    page = tmp_path / "anomaly-detection.md"
    shipped = (ROOT / "docs" / "anomaly-detection.md").read_text()
    page.write_text(shipped)
    report_path = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "flights_app.cli", "evaluate", "--docs", str(page),
                             "--data", str(DATA), "--json", str(report_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    import json

    report = json.loads(report_path.read_text())
    assert set(report) >= {"simulated", "real_injected", "real_traffic", "glitches", "unusual"}
    assert set(report["real_traffic"]) == set(dataset.ORDINARY)
    assert report["glitches"]["jumping_steps"] > 100 and report["unusual"]["aircraft_hours"] > 80
    block = lambda text: text.split(evaluate.DOC_START)[1].split(evaluate.DOC_END)[0]  # noqa: E731
    assert block(page.read_text()) == block(shipped)
    measured = block(shipped)
    kinematic = re.findall(r"Model alone over the kinematic kinds \(speed, altitude, position, vertical rate\): "
                           r"[\d.]+ / [\d.]+ / (\d\.\d+)", measured)
    readme = (ROOT / "README.md").read_text()
    assert [f"{float(f):.2f}" for f in kinematic] == list(re.findall(r"alone reaches F1 ([\d.]+) on injected kinematic "
                                                                r"anomalies in simulated traffic and ([\d.]+)",
                                                                readme)[0])
