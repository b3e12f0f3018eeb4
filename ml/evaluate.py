"""How well the model, the rules and both detect, measured on labelled and real traffic.

    1. injected anomalies (simulated traffic, and real traffic with anomalies injected):
       precision, recall, F1 per kind for the model alone, the rules alone and both
    2. real traffic, nothing injected: alert and data-fault episodes per aircraft-hour, by reason
    3. real bad data (the glitch flights): jumping-position steps flagged within one poll
    4. legitimate but unusual flights: every alert listed with its reason, faults by reason
    5. detection latency: polls from an injected anomaly to its aircraft's first flag

"rules" means any alert or data fault; "model" a score above the manifest's threshold.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from flights_app.geo import haversine_m
from ml.dataset import Row
from ml.model import LoadedModel
from ml.scoring import Verdict, judge, pages

METHODS = ("model", "rules", "both")
KINEMATIC = ("speed_spike", "altitude_jump", "position_jump", "impossible_vertical_rate")
#: Flags of one aircraft no further apart than this are one episode.
EPISODE_GAP_S = 60.0
#: Gaps between an aircraft's states longer than this do not count as tracked time.
TRACKED_GAP_S = 60.0
#: The data's README definition of a jumping-position step.
JUMP_SPEED_MPS, JUMP_RATIO, JUMP_GAPS_S = 350.0, 2.0, (2, 300)


@dataclass
class Confusion:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, truth: bool, predicted: bool) -> None:
        self.tp += truth and predicted
        self.fp += predicted and not truth
        self.fn += truth and not predicted

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": round(self.precision, 4),
                "recall": round(self.recall, 4), "f1": round(self.f1, 4)}


@dataclass
class Scored:
    """Rows of one source with their verdicts, as the worker gives them."""

    rows: list[Row]
    model: np.ndarray  # bool per row: score above the threshold
    verdicts: list[Verdict]
    alert: np.ndarray  # bool per row: what pages (``ml.scoring.pages``)

    def rules(self, i: int) -> bool:
        return bool(self.rows[i].flags.alerts or self.rows[i].flags.faults)


def score_rows(model: LoadedModel, rows: Iterable[Row]) -> Scored:
    rows = list(rows)
    scores = model.score(np.vstack([r.features for r in rows])) if rows else np.zeros(0)
    verdicts = [judge(model, r.features, r.flags, float(s)) for r, s in zip(rows, scores, strict=True)]
    alert = np.array([pages(r.flags.alerts, v.faults, v.is_anomaly, float(s), model.alert_threshold)
                      for r, v, s in zip(rows, verdicts, scores, strict=True)], dtype=bool)
    return Scored(rows, scores > model.threshold, verdicts, alert)


@dataclass
class Injected:
    overall: dict = field(default_factory=lambda: {m: Confusion() for m in METHODS})
    kinematic_model: Confusion = field(default_factory=Confusion)
    by_kind: dict = field(default_factory=dict)  # kind -> method -> Confusion (fp shared: unlabelled flagged)
    rows: int = 0
    real_faults_left_out: int = 0

    def as_dict(self) -> dict:
        return {"rows": self.rows, "real_faults_left_out": self.real_faults_left_out,
                "overall": {m: c.as_dict() for m, c in self.overall.items()},
                "model_kinematic": self.kinematic_model.as_dict(),
                "by_kind": {k: {m: c.as_dict() for m, c in v.items()} for k, v in sorted(self.by_kind.items())}}


def injected(scored: Scored, real_faults: frozenset = frozenset()) -> Injected:
    """Per kind, a method's false positives are the unlabelled states it flags (shared by every kind).

    ``real_faults``: (icao24, last_contact) of states the same traffic without injection already
    flags as data faults (real faults of a real recording carry no label). They are left out of
    the counts, neither hit nor false positive, and counted apart.
    """
    out = Injected(rows=len(scored.rows))
    kinds = sorted({r.kind for r in scored.rows if r.kind})
    out.by_kind = {k: {m: Confusion() for m in METHODS} for k in kinds}
    for i, row in enumerate(scored.rows):
        if row.kind is None and (row.state.icao24, row.state.last_contact) in real_faults:
            out.real_faults_left_out += 1
            continue
        verdict = {"model": bool(scored.model[i]), "rules": scored.rules(i)}
        verdict["both"] = verdict["model"] or verdict["rules"]
        for method in METHODS:
            out.overall[method].add(row.kind is not None, verdict[method])
            for kind in kinds:
                if row.kind == kind or row.kind is None:
                    out.by_kind[kind][method].add(row.kind == kind, verdict[method])
        if row.kind is None or row.kind in KINEMATIC:
            out.kinematic_model.add(row.kind is not None, verdict["model"])
    return out


def rule_faults(scored: Scored) -> frozenset:
    """(icao24, last_contact) of the states the rules flag as data faults (the model's own flags are
    not taken as truth)."""
    return frozenset((r.state.icao24, r.state.last_contact) for r in scored.rows if r.flags.faults)


def flagged_polls(scored: Scored) -> dict[str, set[int]]:
    """Per aircraft, the polls in which the model or the rules flagged it."""
    flagged: dict[str, set[int]] = defaultdict(set)
    for i, row in enumerate(scored.rows):
        if scored.model[i] or scored.rules(i):
            flagged[row.state.icao24].add(row.poll_time)
    return flagged


def latency_polls(scored: Scored, cap: int = 10) -> dict:
    """For each injected anomaly: polls until its aircraft's first flag at or after it (cap if none)."""
    polls_of: dict[str, set[int]] = defaultdict(set)
    for row in scored.rows:
        polls_of[row.state.icao24].add(row.poll_time)
    polls_of = {icao24: sorted(polls) for icao24, polls in polls_of.items()}
    flagged = flagged_polls(scored)
    delays = []
    for row in scored.rows:
        if row.kind is None:
            continue
        later = [t for t in polls_of[row.state.icao24] if t >= row.poll_time]
        first = next((k for k, t in enumerate(later) if t in flagged[row.state.icao24]), None)
        delays.append(cap if first is None else min(cap, first))
    if not delays:
        return {"anomalies": 0}
    return {"anomalies": len(delays), "median": float(np.median(delays)), "p95": float(np.percentile(delays, 95)),
            "never_within": int(sum(d >= cap for d in delays)), "cap_polls": cap}


def aircraft_hours(rows: list[Row]) -> float:
    times: dict[str, set[int]] = defaultdict(set)
    for r in rows:
        times[r.state.icao24].add(r.state.last_contact)
    total = 0.0
    for ts in times.values():
        s = sorted(ts)
        total += sum(min(TRACKED_GAP_S, b - a) for a, b in zip(s, s[1:], strict=False))
    return total / 3600.0


def episodes(flagged: list[tuple[str, int, str]]) -> Counter:
    """(icao24, time, reason) flags -> episodes by reason: one aircraft's flags of one reason with no gap
    over a minute."""
    by: dict[tuple[str, str], list[int]] = defaultdict(list)
    for icao24, t, reason in flagged:
        by[(icao24, reason)].append(t)
    out: Counter = Counter()
    for (_, reason), ts in by.items():
        ts.sort()
        out[reason] += 1 + sum(b - a > EPISODE_GAP_S for a, b in zip(ts, ts[1:], strict=False))
    return out


def reason_of(text: str) -> str:
    """A flag's kind: the words before its numbers ("position jump", "model anomaly: turn rate", ...)."""
    return text.split(":")[0]


def real_traffic(scored: Scored) -> dict:
    alerts, faults = [], []
    for i, row in enumerate(scored.rows):
        who = (row.state.icao24, row.state.event_time)
        if scored.alert[i]:
            reason = reason_of(row.flags.alerts[0]) if row.flags.alerts else "model anomaly"
            alerts.append((*who, reason))
        for fault in scored.verdicts[i].faults:
            faults.append((*who, reason_of(fault)))
    hours = aircraft_hours(scored.rows)
    a, f = episodes(alerts), episodes(faults)
    return {"states": len(scored.rows), "aircraft_hours": round(hours, 2),
            "alert_episodes": sum(a.values()), "alert_episodes_per_aircraft_hour": round(sum(a.values()) / hours, 4)
            if hours else None, "alert_episodes_by_reason": dict(a.most_common()),
            "fault_episodes": sum(f.values()), "fault_episodes_per_aircraft_hour": round(sum(f.values()) / hours, 4)
            if hours else None, "fault_episodes_by_reason": dict(f.most_common()),
            "model_anomalies": int(scored.model.sum())}


def jumping_steps(rows: list[Row]) -> list[int]:
    """Indices of the jumping-position steps, by the data README's definition: consecutive distinct
    states of one aircraft 2-300 s apart implying more than 350 m/s and more than twice the
    reported speed; a jumping state is not the reference for the next one."""
    reference: dict[str, Row] = {}
    out = []
    for i, row in enumerate(rows):
        s, ref = row.state, reference.get(row.state.icao24)
        if ref is not None and (s.event_time, s.latitude, s.longitude) == (ref.state.event_time, ref.state.latitude,
                                                                           ref.state.longitude):
            continue
        if ref is not None:
            gap = s.event_time - ref.state.event_time
            if JUMP_GAPS_S[0] <= gap <= JUMP_GAPS_S[1]:
                speed = haversine_m(ref.state.latitude, ref.state.longitude, s.latitude, s.longitude) / gap
                if speed > JUMP_SPEED_MPS and speed > JUMP_RATIO * s.velocity:
                    out.append(i)
                    continue
        reference[s.icao24] = row
    return out


def glitches(scored: Scored) -> dict:
    """Share of jumping steps whose aircraft is flagged within one poll of the step."""
    steps = jumping_steps(scored.rows)
    flagged_at = flagged_polls(scored)
    polls = sorted({r.poll_time for r in scored.rows})
    index = {t: k for k, t in enumerate(polls)}
    caught = 0
    for i in steps:  # the step's own poll, or the one before or after it (a bad fix the step jumps from or to)
        row = scored.rows[i]
        near = {polls[k] for k in range(max(0, index[row.poll_time] - 1), min(len(polls), index[row.poll_time] + 2))}
        caught += bool(flagged_at[row.state.icao24] & near)
    per_flight: dict[str, Counter] = defaultdict(Counter)
    for i, row in enumerate(scored.rows):
        name = (row.state.callsign or row.state.icao24).strip()
        for fault in scored.verdicts[i].faults:
            per_flight[name][reason_of(fault)] += 1
        per_flight[name]["model anomaly"] += bool(scored.model[i])
        per_flight[name]["states"] += 1
    return {"jumping_steps": len(steps), "flagged_within_one_poll": caught,
            "share": round(caught / len(steps), 4) if steps else None,
            "per_flight": {k: dict(v) for k, v in sorted(per_flight.items())}}


def unusual(model: LoadedModel, scored: Scored) -> dict:
    """Real-traffic figures, and every alert listed with its reason so a person can judge it."""
    out = real_traffic(scored)
    out["alerts"] = [
        {"callsign": (r.state.callsign or "").strip(), "icao24": r.state.icao24, "event_time": r.state.event_time,
         "reason": "; ".join(r.flags.alerts) or f"model anomaly: {scored.verdicts[i].reason}"}
        for i, r in enumerate(scored.rows) if scored.alert[i]]
    return out


#: The evaluation's simulated traffic: not the training seed, more anomalies so each kind has many.
SIMULATED = {"aircraft": 300, "minutes": 30.0, "seed": 2, "rate": 0.02}
QUICK_SIMULATED = {"aircraft": 60, "minutes": 10.0, "seed": 2, "rate": 0.02}
#: Real traffic gets anomalies injected at this rate, with this seed.
INJECT_SEED, INJECT_RATE = 5, 0.02
#: ``--quick`` reads at most this many polls of each recording.
QUICK_POLLS = 300


def run(model: LoadedModel, data, *, quick: bool = False, say=print) -> dict:
    """Every section of the evaluation; ``data`` is the folder of the real recordings (None: simulated only).

    The simulated traffic is scored in a second process while this one scores the recordings
    (the two halves take about as long; the machine has two cores)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    sim = QUICK_SIMULATED if quick else SIMULATED
    report: dict = {"model": model.version, "threshold": model.threshold, "alert_threshold": model.alert_threshold,
                    "quick": quick}
    say(f"simulated traffic: {sim['aircraft']} aircraft, {sim['minutes']:g} min, seed {sim['seed']}, "
        f"anomaly rate {sim['rate']:g}")
    if data is None:
        report["simulated"] = simulated_section(model, sim)
        return report
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        simulated = pool.submit(simulated_section, model.path, sim)
        report.update(real_sections(model, data, quick, say))
        report["simulated"] = simulated.result()
    return report


def simulated_section(model: LoadedModel | str, sim: dict) -> dict:
    """Injected anomalies on simulated traffic (``model``: loaded, or its path when run in another process)."""
    from ml import dataset
    from ml.model import load

    model = load(model) if not isinstance(model, LoadedModel) else model
    scored = score_rows(model, dataset.feature_rows(dataset.simulated_polls(
        sim["aircraft"], seed=sim["seed"], minutes=sim["minutes"], anomaly_rate=sim["rate"])))
    return {"source": sim, **injected(scored).as_dict(), "latency_polls": latency_polls(scored)}


def real_sections(model: LoadedModel, data, quick: bool, say) -> dict:
    """The sections on the real recordings in ``data``."""
    from itertools import islice
    from pathlib import Path

    from ml import dataset

    def polls(source):
        return islice(source, QUICK_POLLS) if quick else source

    data = Path(data)
    report: dict = {"real_traffic": {}}
    real = {}
    for name in dataset.ORDINARY:
        say(f"real traffic, nothing injected: {name} (held-out aircraft)")
        real[name] = score_rows(model, dataset.feature_rows(polls(dataset.part_polls(data / name, dataset.TEST_PART))))
        report["real_traffic"][name] = real_traffic(real[name])
    say(f"real traffic with anomalies injected: {dataset.FRANCE}, held-out aircraft, rate {INJECT_RATE:g}")
    scored = score_rows(model, dataset.feature_rows(dataset.injected_polls(
        polls(dataset.part_polls(data / dataset.FRANCE, dataset.TEST_PART)), seed=INJECT_SEED, rate=INJECT_RATE)))
    strict = injected(scored)
    report["real_injected"] = {**injected(scored, rule_faults(real[dataset.FRANCE])).as_dict(),
                               "strict": {"model_kinematic": strict.kinematic_model.as_dict(),
                                          "both": strict.overall["both"].as_dict()},
                               "latency_polls": latency_polls(scored)}
    say(f"real bad data: {dataset.GLITCHES}")
    report["glitches"] = glitches(score_rows(model, dataset.feature_rows(polls(
        dataset.recorded_polls(data / dataset.GLITCHES)))))
    say(f"legitimate but unusual flights: {dataset.UNUSUAL}")
    report["unusual"] = unusual(model, score_rows(model, dataset.feature_rows(polls(
        dataset.recorded_polls(data / dataset.UNUSUAL)))))
    return report


DOC_START, DOC_END = "<!-- evaluate:start -->", "<!-- evaluate:end -->"


def markdown(report: dict) -> str:
    """The report as the tables of docs/anomaly-detection.md (written between its markers)."""
    def prf(c: dict) -> str:
        return f"{c['precision']:.3f} / {c['recall']:.3f} / {c['f1']:.3f}"

    out = [f"Model `{report['model']}`: threshold {report['threshold']:.4f}, alert threshold "
           f"{report['alert_threshold']:.4f}" + (" (quick run)" if report["quick"] else "") + "."]
    for key, title in (("simulated", "Simulated traffic with injected anomalies"),
                       ("real_injected", "Real traffic (held-out aircraft) with injected anomalies")):
        if key not in report:
            continue
        d = report[key]
        left_out = (f"; {d['real_faults_left_out']:,} states left out: the recording's own data faults, "
                    "which the rules flag without injection" if d.get("real_faults_left_out") else "")
        out += ["", f"**{title}** ({d['rows']:,} states{left_out}; precision / recall / F1):", "",
                "| kind | count | model | rules | both |", "|---|---:|---:|---:|---:|"]
        for kind, methods in d["by_kind"].items():
            count = methods["model"]["tp"] + methods["model"]["fn"]
            out.append(f"| {kind.replace('_', ' ')} | {count:,} | "
                       "" + " | ".join(prf(c) for c in methods.values()) + " |")
        total = d["overall"]["model"]["tp"] + d["overall"]["model"]["fn"]
        out.append(f"| all kinds | {total:,} | " + " | ".join(prf(c) for c in d["overall"].values()) + " |")
        k, lat = d["model_kinematic"], d["latency_polls"]
        out += ["", f"Model alone over the kinematic kinds (speed, altitude, position, vertical rate): {prf(k)}. "
                    f"Detection latency: median {lat.get('median')} polls, p95 {lat.get('p95')} polls "
                    f"({lat.get('never_within', 0)} of {lat['anomalies']} not flagged within {lat.get('cap_polls')})."]
        if "strict" in d:
            out += ["", "Counting every flag on an unlabelled state as a false positive (the recording's own faults "
                        f"included): model alone over the kinematic kinds {prf(d['strict']['model_kinematic'])}; both "
                        f"over all kinds {prf(d['strict']['both'])}."]
    if report.get("real_traffic"):
        out += ["", "**Real traffic, nothing injected** (held-out aircraft; episodes: one aircraft's flags with no "
                    "gap over a minute):", "",
                "| recording | states | aircraft-hours | alert episodes / h | data-fault episodes / h | fault "
                "episodes by reason |",
                "|---|---:|---:|---:|---:|---|"]
        for name, d in report["real_traffic"].items():
            reasons = ", ".join(f"{r} {n}" for r, n in d["fault_episodes_by_reason"].items()) or "none"
            out.append(f"| `{name}` | {d['states']:,} | {d['aircraft_hours']} | "
                       f"{d['alert_episodes_per_aircraft_hour']} "
                       f"({d['alert_episodes']}) | {d['fault_episodes_per_aircraft_hour']} ({d['fault_episodes']}) | "
                       f"{reasons} |")
    if "glitches" in report:
        g = report["glitches"]
        out += ["", f"**Real bad data** (glitch flights): {g['flagged_within_one_poll']} of {g['jumping_steps']} "
                    f"jumping-position steps flagged within one poll ({g['share']:.1%}). Flags per flight:", "",
                "| flight | states | flags by reason |", "|---|---:|---|"]
        for flight, counts in g["per_flight"].items():
            flags = ", ".join(f"{r} {n}" for r, n in counts.items() if r != "states" and n) or "none"
            out.append(f"| {flight} | {counts['states']:,} | {flags} |")
    if "unusual" in report:
        u = report["unusual"]
        reasons = ", ".join(f"{r} {n}" for r, n in u["fault_episodes_by_reason"].items()) or "none"
        out += ["", f"**Legitimate but unusual flights**: {u['states']:,} states, {u['aircraft_hours']} "
                    "aircraft-hours; "
                    f"{u['alert_episodes']} alert episodes ({u['alert_episodes_per_aircraft_hour']}/aircraft-hour); "
                    f"data-fault episodes {u['fault_episodes']} "
                    f"({u['fault_episodes_per_aircraft_hour']}/aircraft-hour: "
                    f"{reasons})."]
        out += [f"- alert: {a['callsign']} ({a['icao24']}) at {a['event_time']}: {a['reason']}" for a in u["alerts"]]
    return "\n".join(out)
