"""The chaos soak (``make soak SOAK_ARGS="--chaos"``): N workers of one app on an embedded broker
while the input keeps coming; one worker after another is killed with ``kill -9`` and restarted at
once (every second one on an emptied data directory, so it rebuilds its tables from the changelogs),
one kill is a long outage (the worker stays down long enough for FlightsWorkerDown to fire), the group
is scaled up from 1 worker to N at the start and back down to 1 before the end. A real Prometheus
(Debian's, with the shipped ``monitoring/prometheus`` configuration and alert rules) scrapes the workers
all along.

The input is either simulated states produced straight to flight-raw-data (``--rate`` per second), or
a recording served by the fake OpenSky server and polled by the workers' own source (``--replay PATH``,
paced to last ``--minutes``; the source authenticates, so a new leader can fetch the polls it missed).

At the end it checks, from the topics:
- every distinct state on flight-raw-data has a scored record on flight-processed-data;
- the newest record of every (country, window) counts exactly the distinct states of flight-raw-data
  in it (closed windows, and the open ones too: nothing is expected to come after the drain);
- with ``--replay``: every row of the recording reached flight-raw-data or flight-invalid-data;
and reports, per kill, the time until every partition of the group's input topics commits again
(what a kill costs), and which alerts Prometheus fired and resolved.
"""

from __future__ import annotations

import asyncio
import collections
import json
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.pipeline import SEND_EVERY_S, Bench, BenchError, raw_records
from bench.prometheus import Prometheus
from bench.soak import Collector, _sample, log
from bench.workload import shifted, simulate
from flights_app.records import event_time_of
from flights_app.topic_names import AGGREGATED, INVALID, PROCESSED, RAW, WINDOW_PARTIALS
from tests.diagnosis import where_counts_went_missing
from tests.harness import FakeOpenSky, http_json

WINDOW_S = 600
CLIENT_ID, CLIENT_SECRET = "chaos", "chaos-soak-secret"


@dataclass
class Step:
    at_s: float
    action: str  # kill | kill-wipe | outage | restart | scale-up | scale-down
    slot: int | None = None


def schedule(minutes: float, workers: int, every_s: float, outage_s: float) -> list[Step]:
    """Scale up at 60 s; from then a kill every ``every_s`` in turn over the workers, every second one on
    an emptied data directory, the third an outage of ``outage_s``; scale down ``every_s`` (at least
    90 s) before the end, with no kill in the last ``every_s`` before it."""
    end = minutes * 60
    down_at = end - max(90.0, every_s)
    steps = [Step(60, "scale-up")]
    t, k = 60 + every_s, 0
    while t + every_s <= down_at:
        slot = k % workers
        if k == 2 and outage_s and t + outage_s + every_s <= down_at:
            steps += [Step(t, "outage", slot), Step(t + outage_s, "restart", slot)]
            t += outage_s
        else:
            steps.append(Step(t, "kill-wipe" if k % 2 else "kill", slot))
        t += every_s
        k += 1
    steps.append(Step(down_at, "scale-down"))
    return steps


class Fleet:
    """The workers of one app, by slot: each slot keeps its data directory and web port, so a worker
    restarted in it is the same static group member."""

    def __init__(self, bench: Bench, app: dict, prometheus: Prometheus | None):
        self.bench, self.app, self.prometheus = bench, app, prometheus
        self.procs: dict[int, object] = {}
        self.ports: dict[int, int] = {}
        self.addresses: dict[int, int] = {}  # every slot's web port, scaled down or not

    def start(self, slot: int):
        worker = self.bench.start_worker(self.app, f"worker{slot}", web_port=self.ports.get(slot))
        self.ports[slot] = self.addresses[slot] = worker.web_port
        self.procs[slot] = worker
        self._targets()
        return worker

    def kill(self, slot: int, wipe: bool) -> None:
        worker = self.procs.pop(slot)
        worker.kill()
        self.bench.workers.remove(worker)
        if wipe:
            shutil.rmtree(self.bench.datadir(self.app, f"worker{slot}"), ignore_errors=True)

    def stop(self, slot: int) -> None:
        worker = self.procs.pop(slot)
        self.ports.pop(slot)
        self._targets()  # scaled down: no longer a target (before it stops, so it never shows as down)
        worker.stop()
        self.bench.workers.remove(worker)

    def _targets(self) -> None:
        # A killed worker stays a target (it must show as down); a worker scaled down is no longer one.
        if self.prometheus is not None:
            self.prometheus.set_targets([f"127.0.0.1:{port}" for port in self.ports.values()])

    def check(self) -> None:
        for slot, worker in self.procs.items():
            if not worker.alive():
                raise BenchError(f"worker{slot} exited:\n{worker.tail()}")

    def ready(self, slot: int) -> bool:
        worker = self.procs.get(slot)
        try:
            return worker is not None and http_json(f"http://127.0.0.1:{worker.web_port}/health",
                                                    timeout_s=2).get("status") == "ok"
        except Exception:  # noqa: BLE001 - starting, or 503 while recovering
            return False


class Resumption:
    """The time from a disruption (a kill, a scale step) until every partition of the group's input
    topics that had records waiting has committed past where it stood at the disruption: all
    partitions processing again. Measured from outside, through the group's committed offsets (so it
    includes up to one commit interval)."""

    def __init__(self, bench: Bench, group: str, topics: list[str], partitions: int):
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bench.bootstrap, group_id=group,
                                         enable_auto_commit=False)
        self.tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        self.open: list[dict] = []
        self.done: list[dict] = []

    async def start(self) -> None:
        await self.consumer.start()

    async def _committed(self) -> dict:
        return {tp: (await self.consumer.committed(tp)) or 0 for tp in self.tps}

    async def disrupted(self, what: str, slot: int | None, t_s: float) -> None:
        self.open.append({"what": what, "slot": slot, "t_s": round(t_s, 1), "at": time.monotonic(),
                          "from": await self._committed(), "ready_s": None})

    def worker_ready(self, slot: int) -> None:
        for entry in self.open:
            if entry["slot"] == slot and entry["ready_s"] is None:
                entry["ready_s"] = round(time.monotonic() - entry["at"], 1)

    async def check(self) -> None:
        if not self.open:
            return
        committed, ends = await self._committed(), await self.consumer.end_offsets(self.tps)
        for entry in list(self.open):
            waiting = [tp for tp in self.tps if ends[tp] > entry["from"][tp]]
            if waiting and all(committed[tp] > entry["from"][tp] for tp in waiting):
                entry["resume_s"] = round(time.monotonic() - entry["at"], 1)
                self.open.remove(entry)
                self.done.append({k: v for k, v in entry.items() if k not in ("at", "from")})

    async def stop(self) -> None:
        await self.consumer.stop()

    def report(self) -> dict:
        kills = [e["resume_s"] for e in self.done if e["what"] in ("kill", "kill-wipe")]
        return {"per_step": self.done + [{"what": e["what"], "slot": e["slot"], "t_s": e["t_s"],
                                          "resume_s": None} for e in self.open],
                "kill_resume_s": {"count": len(kills), "median": statistics.median(kills) if kills else None,
                                  "max": max(kills) if kills else None}}


class Expected:
    """What the topics must show: the distinct states on flight-raw-data, by (country, window)."""

    def __init__(self) -> None:
        self.raw: dict[tuple[str, int], tuple[str, int]] = {}  # (icao24, event time) -> (country, window)
        self.rows: set[tuple[str, int]] = set()  # (icao24, last_contact) on flight-raw-data
        self.invalid: set[tuple[str, int]] = set()  # (icao24, last_contact) rejected
        self.scored: set[tuple[str, int]] = set()
        self.finals: dict[tuple[str, int], int] = {}
        self.latest: dict[tuple[str, int], tuple[float, int]] = {}

    def on_raw(self, value: dict) -> None:
        states = value["states"] if value.get("kind") == "states" else [value]
        for state in states:
            self.rows.add((state["icao24"], state["last_contact"]))
            self.raw.setdefault((state["icao24"], event_time_of(state)),
                                (state["origin_country"], event_time_of(state) // WINDOW_S * WINDOW_S))

    def on_invalid(self, value: dict) -> None:
        row = value.get("raw")
        if isinstance(row, list) and len(row) > 4:
            self.invalid.add((row[0], row[4]))

    def on_scored(self, value: dict) -> None:
        self.scored.add((value["state"]["icao24"], event_time_of(value["state"])))

    def on_window(self, value: dict) -> None:
        if value["dimension"] != "country":
            return
        key, counted = (value["name"], value["window_start"]), value["events"] + value["late_events"]
        if value["final"]:
            self.finals[key] = counted
        if key not in self.latest or value["emitted_at"] >= self.latest[key][0]:
            self.latest[key] = (value["emitted_at"], counted)

    def verdict(self) -> tuple[int, dict]:
        expected = collections.Counter(self.raw.values())
        wrong = {k: (self.latest.get(k, (0, 0))[1], n) for k, n in expected.items()
                 if self.latest.get(k, (0, 0))[1] != n}
        wrong.update({k: (got, 0) for k, (_, got) in self.latest.items() if k not in expected})
        return len(set(self.raw) - self.scored), wrong


def recording_rows(path: Path) -> dict[tuple[str, int], int]:
    """(icao24, last_contact) of every row OpenSky would give for the recording's poll times (of polls
    sharing a time, the last: the snapshot its ``time`` parameter answers), with its poll's time."""
    from flights_app.fake_opensky.recordings import load_recording

    snapshots = {poll.time: poll for poll in load_recording(path)}
    return {(row[0], row[4]): t for t, poll in snapshots.items() for row in poll.states or []}


async def chaos(bench: Bench, tmp: Path, *, minutes: float, workers: int, every_s: float, outage_s: float,
                rate: float, replay: Path | None, drain_s: float, sample_s: float = 10) -> dict:
    app = bench.new_app()
    app.update(FLIGHTS_WINDOW=str(WINDOW_S), FLIGHTS_WINDOW_GRACE="30", FLIGHTS_WINDOW_EXPIRY="1200",
               FLIGHTS_LOG_LEVEL="info")
    prefix, partitions = app["FLIGHTS_TOPIC_PREFIX"], bench.partitions
    fake = None
    if replay is not None:
        from flights_app.fake_opensky.recordings import load_recording

        polls = load_recording(replay)
        span = max(p.time for p in polls) - min(p.time for p in polls)
        speed = span / (minutes * 60 - 30)  # the whole recording within the run, 30 s to spare
        fake = FakeOpenSky(tmp, "--replay", str(replay), "--pace", "clock", "--speed", f"{speed:.3f}",
                           "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET)
        # Authenticated (a new leader asks for the poll times it missed, as far back as OpenSky keeps);
        # polls twice per recorded cadence, so none passes unseen.
        app.update(OPENSKY_URL=fake.api_url, OPENSKY_TOKEN_URL=fake.token_url, OPENSKY_CLIENT_ID=CLIENT_ID,
                   OPENSKY_CLIENT_SECRET=CLIENT_SECRET, FLIGHTS_CATCH_UP_MAX="720", FLIGHTS_BACKOFF_MAX="1",
                   FLIGHTS_POLL_INTERVAL=f"{min(1.0, span / (len(polls) - 1) / speed / 2):.3f}")
        log(f"replaying {replay.name}: {len(polls)} polls at {speed:.1f}x")
    else:
        # The states come from the soak's producer; the source polls an OpenSky with no aircraft, so it
        # is healthy as in production (without one, FlightsSourceFailing fires, rightly).
        fake = FakeOpenSky(tmp, "--simulate", "0")
        app.update(OPENSKY_URL=fake.api_url, FLIGHTS_POLL_INTERVAL="5")
    prometheus = Prometheus(tmp)
    fleet = Fleet(bench, app, prometheus)
    expected = Expected()
    collectors = [Collector(bench, prefix + RAW, partitions, expected.on_raw),
                  Collector(bench, prefix + INVALID, partitions, expected.on_invalid),
                  Collector(bench, prefix + PROCESSED, partitions, expected.on_scored),
                  Collector(bench, prefix + AGGREGATED, partitions, expected.on_window)]
    resumption = Resumption(bench, app["FLIGHTS_APP_ID"], [prefix + RAW, prefix + WINDOW_PARTIALS], partitions)
    producer = probe = None
    steps = schedule(minutes, workers, every_s, outage_s)
    done_steps: list[dict] = []
    samples: list[dict] = []
    try:
        bench.wait_ready(fleet.start(0))
        for collector in collectors:
            await collector.start()
        await resumption.start()
        probe = bench.consumer()
        await probe.start()
        if replay is None:
            producer = bench.producer()
            await producer.start()
            workload = simulate(1000, 60, repeat_every=10)  # every 10th poll sent twice: known duplicates
            times = [event_time_of(s) for s in workload.states]
            period = (max(times) - min(times)) // 60 * 60 + 60
        started = time.monotonic()
        prometheus.started = time.time()  # its report's times count from the run's start, as the steps'
        sent, futures, next_sample = 0, [], started
        restarting: set[int] = set()
        log(f"chaos: {workers} workers, {len(steps)} steps over {minutes:g} min: "
            + ", ".join(f"{s.at_s:.0f}s {s.action}{'' if s.slot is None else ' ' + str(s.slot)}" for s in steps))
        while True:
            now = time.monotonic()
            t = now - started
            while steps and steps[0].at_s <= t:
                step = steps.pop(0)
                await _run_step(step, fleet, resumption, workers, t)
                done_steps.append({"t_s": round(t), "action": step.action, "slot": step.slot})
                log(f"{step.action}{'' if step.slot is None else ' worker' + str(step.slot)} at {t:.0f} s")
                if step.action in ("kill", "kill-wipe", "restart", "scale-up"):
                    restarting |= set(fleet.procs) if step.slot is None else {step.slot}
            for slot in list(restarting):
                if fleet.ready(slot):
                    resumption.worker_ready(slot)
                    restarting.discard(slot)
            await resumption.check()
            fleet.check()
            if now >= next_sample and fleet.procs:
                sample = await _sample(bench, probe, next(iter(fleet.procs.values())), prefix, partitions, t, sent)
                sample["workers"] = len(fleet.procs)
                samples.append(sample)
                log(json.dumps(sample))
                next_sample += sample_s
            if replay is None:
                if t >= minutes * 60:
                    break
                due = int(t * rate)
                states = []
                while sent < due:
                    states.append(shifted(workload.states[sent % len(workload)], sent // len(workload), period))
                    sent += 1
                for partition, key, value in raw_records(states, time.time(), partitions, batched=True):
                    futures.append(await producer.send(prefix + RAW, key=key, value=value, partition=partition))
                if len(futures) > 500:
                    await asyncio.gather(*futures)
                    futures = []
            elif fake.stats()["exhausted"] or t >= minutes * 60 + 300:
                break
            await asyncio.sleep(SEND_EVERY_S if replay is None else 1.0)
        await asyncio.gather(*futures)
        for step in steps:  # a run cut short by the replay's end still scales down
            await _run_step(step, fleet, resumption, workers, time.monotonic() - started)
            done_steps.append({"t_s": round(time.monotonic() - started), "action": step.action, "slot": step.slot})
        sending_s = time.monotonic() - started
        log(f"input done after {sending_s:.0f} s ({sent:,} states sent; {len(expected.raw):,} distinct on "
            f"flight-raw-data so far); draining")
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            await resumption.check()
            lost, wrong = expected.verdict()
            if not lost and not wrong and all([await c.caught_up() for c in collectors]):
                break
            await asyncio.sleep(5)
        lost, wrong = expected.verdict()
        source_missing, missing_polls = None, {}
        if replay is not None:
            rows = recording_rows(replay)
            missing = set(rows) - expected.rows - expected.invalid
            source_missing = len(missing)
            missing_polls = collections.Counter(rows[row] for row in missing)
        alerts, down = prometheus.alerts(time.time()), prometheus.down_spells(time.time())
        for step in done_steps:  # did Prometheus see the killed worker down (a scrape while it was)?
            spells = down.get(f"127.0.0.1:{fleet.addresses.get(step['slot'])}", [])
            if step["action"] in ("kill", "kill-wipe", "outage"):
                step["seen_down_by_prometheus"] = any(step["t_s"] - 1 <= a <= step["t_s"] + every_s for a, _ in spells)
        per_aircraft = collections.Counter(("country", c, w, icao24) for (icao24, _), (c, w) in expected.raw.items())
        short = await where_counts_went_missing(
            bench.bootstrap, app["FLIGHTS_APP_ID"], {("country", c, w): got for (c, w), (got, _) in wrong.items()},
            per_aircraft) if wrong else []
        worker_logs = "".join(p.read_text(errors="replace") for p in tmp.glob(f"{app['FLIGHTS_APP_ID']}-*.log"))
        return {"minutes": minutes, "workers": workers, "kill_every_s": every_s, "outage_s": outage_s,
                "input": str(replay.name) if replay else f"simulated, {rate:g} states/s",
                "sent": sent if replay is None else None, "distinct_on_raw": len(expected.raw),
                "recording_rows_missing_from_the_source": source_missing,
                "recording_poll_times_with_rows_missing": dict(sorted(missing_polls.items())[:20]),
                "rejected_rows": len(expected.invalid),
                "lost": lost, "windows_checked": len(expected.latest), "closed_windows": len(expected.finals),
                "wrong_windows": {f"{c}|{w}": v for (c, w), v in list(wrong.items())[:20]},
                "where_wrong_windows_went_short": short,
                "steps": done_steps, "resumption": resumption.report(),
                "prometheus": {"scrape_interval_s": prometheus.interval_s, "alerts": alerts,
                               "down_spells_s": down},
                "catch_ups": worker_logs.count("Caught up"), "polls_not_fetched": worker_logs.count(
                    "were not published and cannot be fetched"),
                "samples": samples}
    finally:
        for collector in collectors:
            await collector.stop()
        for client in (producer, probe, resumption):
            if client is not None:
                await client.stop()
        bench.stop_workers()
        prometheus.stop()
        if fake is not None:
            fake.stop()


async def _run_step(step: Step, fleet: Fleet, resumption: Resumption, workers: int, t: float) -> None:
    if step.action == "scale-up":
        await resumption.disrupted(step.action, None, t)
        for slot in range(1, workers):
            fleet.start(slot)
    elif step.action == "scale-down":
        await resumption.disrupted(step.action, None, t)
        for slot in sorted(fleet.procs)[1:]:
            fleet.stop(slot)
    elif step.action in ("kill", "kill-wipe", "outage"):
        if step.slot not in fleet.procs:
            return
        await resumption.disrupted(step.action, step.slot, t)
        fleet.kill(step.slot, wipe=step.action == "kill-wipe")
        if step.action != "outage":
            fleet.start(step.slot)
    elif step.action == "restart":
        fleet.start(step.slot)


def passed(report: dict) -> bool:
    alerts = {a["alert"] for a in report["prometheus"]["alerts"] if a["fired_at_s"] is not None}
    return (report["lost"] == 0 and not report["wrong_windows"] and report["windows_checked"] > 0
            and not report["recording_rows_missing_from_the_source"]
            and all(e["resume_s"] is not None for e in report["resumption"]["per_step"])
            # the alert is owed only where an outage took place (a short run has no room for one)
            and (not any(s["action"] == "outage" for s in report["steps"]) or "FlightsWorkerDown" in alerts)
            and all(a["resolved"] for a in report["prometheus"]["alerts"]))


def summary_line(report: dict) -> str:
    kills = report["resumption"]["kill_resume_s"]
    fired = [f"{a['alert']} ({a['instance'] or a['topic'] or 'all'}: fired {a['fired_at_s']} s, "
             f"{'resolved' if a['resolved'] else 'STILL FIRING'})"
             for a in report["prometheus"]["alerts"] if a["fired_at_s"] is not None]
    return (f"chaos soak {'passed' if passed(report) else 'FAILED'}: lost {report['lost']}, wrong windows "
            f"{len(report['wrong_windows'])} of {report['windows_checked']}, recording rows missing "
            f"{report['recording_rows_missing_from_the_source']}, resume after a kill -9: median "
            f"{kills['median']} s, max {kills['max']} s over {kills['count']} kills; alerts: "
            f"{'; '.join(fired) or 'none fired'}")
