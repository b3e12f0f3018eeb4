"""The soak run (``make soak``): a steady input rate for a long time, with the worker restarted every
few minutes (alternately kill -9 and SIGTERM), on an embedded broker of its own.

Every ``sample_s`` it prints states sent, scored (on flight-processed-data), the worker's consumer lag
and RSS, and the broker's disk use. At the end it checks that nothing was lost: every state sent has
a scored record, and the newest count of every closed (country, window) equals the distinct states
sent into it (in the window or late). ``python -m bench.soak --minutes 30 --rate 1000 --restart-every 300``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import orjson
from aiokafka import TopicPartition

from bench.pipeline import SEND_EVERY_S, Bench, BenchError, end_offsets, raw_records, rss_mb
from bench.workload import shifted, simulate
from flights_app.records import event_time_of
from flights_app.topic_names import AGGREGATED, PROCESSED, RAW
from tests.diagnosis import where_counts_went_missing
from tests.harness import http_json

WINDOW_S = 600


def log(text: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def disk_mb(path: Path) -> float:
    """Disk space the files under ``path`` take (blocks: Kafka preallocates its index files sparsely)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return round(total / 2**20, 1)


class Collector:
    """Reads a topic from its start as records arrive, all run long (the topics' retention is shorter
    than the run, so reading them at the end would find the early records deleted)."""

    def __init__(self, bench: Bench, topic: str, partitions: int, on_value):
        self.consumer = bench.consumer()
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.on_value = on_value
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign(self.tps)
        await self.consumer.seek_to_beginning(*self.tps)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=500, max_records=20_000)).values():
                for record in records:
                    self.on_value(orjson.loads(record.value))

    async def caught_up(self) -> bool:
        ends = await self.consumer.end_offsets(self.tps)
        return all([await self.consumer.position(tp) >= ends[tp] for tp in self.tps])

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


async def soak(bench: Bench, *, minutes: float, rate: float, restart_every_s: float, retention_min: float,
               sample_s: float = 10, drain_s: float = 600) -> dict:
    app = bench.new_app()
    app.update(FLIGHTS_WINDOW=str(WINDOW_S), FLIGHTS_WINDOW_GRACE="30", FLIGHTS_WINDOW_EXPIRY="1200",
               FLIGHTS_RETENTION_HOURS=f"{retention_min / 60:.4f}")
    prefix, partitions = app["FLIGHTS_TOPIC_PREFIX"], bench.partitions
    workload = simulate(1000, 60, repeat_every=10)  # every 10th poll sent twice: known duplicates
    # Each pass continues where the last ended (event time): an hour's jump between passes expired
    # whole windows at once while a partition still held states for them (counted as too late).
    times = [event_time_of(s) for s in workload.states]
    period = (max(times) - min(times)) // 60 * 60 + 60
    worker = bench.start_worker(app, "worker")
    bench.wait_ready(worker)
    producer, probe = bench.producer(), bench.consumer()
    await producer.start()
    await probe.start()
    scored: set[tuple[str, int]] = set()
    finals, latest = {}, {}

    def on_scored(value: dict) -> None:
        scored.add((value["state"]["icao24"], event_time_of(value["state"])))

    def on_window(value: dict) -> None:
        if value["dimension"] != "country":
            return
        key, counted = (value["name"], value["window_start"]), value["events"] + value["late_events"]
        if value["final"]:
            finals[key] = counted  # late states count apart from the window's figures
        if key not in latest or value["emitted_at"] >= latest[key][0]:
            latest[key] = (value["emitted_at"], counted, value["final"])

    collectors = [Collector(bench, prefix + PROCESSED, partitions, on_scored),
                  Collector(bench, prefix + AGGREGATED, partitions, on_window)]
    for collector in collectors:
        await collector.start()
    total = int(rate * minutes * 60)
    expected: collections.Counter = collections.Counter()
    per_aircraft: collections.Counter = collections.Counter()  # ("country", name, window, icao24) -> distinct states
    sent_ids: set[tuple[str, int]] = set()
    samples, restarts, kill = [], [], True
    try:
        started = time.monotonic()
        sent, next_sample, next_restart, futures = 0, started, started + restart_every_s, []
        while sent < total:
            now = time.monotonic()
            if now >= next_restart:
                how = "kill -9" if kill else "SIGTERM"
                (worker.kill if kill else worker.stop)()
                bench.workers.remove(worker)
                worker = bench.start_worker(app, "worker")
                restarts.append({"t_s": round(now - started), "how": how})
                log(f"restarted the worker ({how})")
                kill, next_restart = not kill, now + restart_every_s
            if now >= next_sample:
                sample = await _sample(bench, probe, worker, prefix, partitions, now - started, sent)
                samples.append(sample)
                log(json.dumps(sample))
                next_sample += sample_s
            due = min(total, int((now - started) * rate))
            wall = time.time()
            states = []
            while sent < due:
                state = shifted(workload.states[sent % len(workload)], sent // len(workload), period)
                identity = (state["icao24"], event_time_of(state))
                if identity not in sent_ids:
                    sent_ids.add(identity)
                    window = (state["origin_country"], event_time_of(state) // WINDOW_S * WINDOW_S)
                    expected[window] += 1
                    per_aircraft[("country", *window, state["icao24"])] += 1
                states.append(state)
                sent += 1
            for partition, key, value in raw_records(states, wall, partitions, batched=True):  # as the source
                futures.append(await producer.send(prefix + RAW, key=key, value=value, partition=partition))
            if len(futures) > 500:
                await asyncio.gather(*futures)
                futures = []
            if not worker.alive():
                raise BenchError(f"worker exited:\n{worker.tail()}")
            await asyncio.sleep(SEND_EVERY_S)
        await asyncio.gather(*futures)
        log(f"sent {sent:,} states in {time.monotonic() - started:.0f} s; draining")
        # Drained when every state sent has its scored record and every closed window's newest record
        # is exact (the count of processed records alone says nothing: states replayed after a kill -9
        # are scored twice), or after --drain-minutes (10), when what is missing is reported.
        def verdict() -> tuple[int, dict]:
            # Every closed window's newest record counts exactly the distinct states sent into it (in the
            # window or late); a final record may count fewer where late states came after it.
            wrong = {k: (latest[k][1], expected[k]) for k in finals if latest[k][1] != expected[k]}
            return len(sent_ids - scored), wrong

        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            lost, wrong = verdict()
            if not lost and not wrong:
                break
            await asyncio.sleep(5)
        samples.append(await _sample(bench, probe, worker, prefix, partitions, time.monotonic() - started, sent))
        log(json.dumps(samples[-1]))
        lost, wrong = verdict()
        late_after_final = sum(1 for k, n in finals.items() if n != latest[k][1])
        sending = [s for s in samples if s["t_s"] <= minutes * 60]  # the drain's samples would flatter it
        disks = [s["broker_disk_mb"] for s in sending]
        half = min(sending, key=lambda s: abs(s["t_s"] - minutes * 30))["broker_disk_mb"]
        stalls = worker.log_text().count("reading the partition again from")  # the log holds every life's lines
        short = await where_counts_went_missing(
            bench.bootstrap, app["FLIGHTS_APP_ID"], {("country", c, w): got for (c, w), (got, _) in wrong.items()},
            per_aircraft) if wrong else []
        return {"minutes": minutes, "rate_per_s": rate, "retention_min": retention_min, "sent": sent,
                "distinct": len(sent_ids),
                "restarts": restarts, "lost": lost, "closed_windows_checked": len(finals),
                "wrong_windows": {f"{c}|{w}": v for (c, w), v in list(wrong.items())[:20]},
                "windows_with_late_states_after_their_final": late_after_final,
                "commit_stalls_unstuck": stalls,
                "where_wrong_windows_went_short": short,
                "rss_growth": _rss_growth(samples, restarts), "broker_disk_mb": {"first": disks[0], "half_time": half,
                                                                                 "max": max(disks),
                                                                                  "last": disks[-1]},
                "disk_growth_second_half_pct": round((disks[-1] - half) / half * 100, 1) if half else None,
                "samples": samples}
    finally:
        for collector in collectors:
            await collector.stop()
        await producer.stop()
        await probe.stop()
        bench.stop_workers()


async def _sample(bench: Bench, probe, worker, prefix: str, partitions: int, t: float, sent: int) -> dict:
    lag = None
    try:
        lag = http_json(f"http://127.0.0.1:{worker.web_port}/health", timeout_s=3)["lag"]["total"]
    except Exception:  # noqa: BLE001 - restarting, or 503 while recovering (its body is not read)
        pass
    memory = rss_mb(worker.process.pid) if worker.alive() else {"rss_mb": None}
    return {"t_s": round(t), "sent": sent, "scored": await end_offsets(probe, prefix + PROCESSED, partitions),
            "lag": lag, "rss_mb": memory["rss_mb"], "broker_disk_mb": disk_mb(bench.broker.log_dir)}


def _rss_growth(samples: list[dict], restarts: list[dict]) -> dict:
    """The worker's RSS at the end of each life (the last sample before each restart, and the last)
    and the growth from the second working life's end to the last working life's end. A life that
    scored nothing is left out of the growth: after a kill -9 the new worker waits for the dead one's
    session to time out, and with short lives it can be restarted again before it scores anything
    (an RSS of a worker that never loaded its work, compared with one that did)."""
    ends, working, bounds = [], [], [r["t_s"] for r in restarts] + [float("inf")]
    start = float("-inf")
    for bound in bounds:  # a sample taken at a restart's second is the life before it
        life = [s for s in samples if start < s["t_s"] < bound and s["rss_mb"]]
        start = bound
        if life:
            ends.append(life[-1]["rss_mb"])
            if life[-1]["scored"] > life[0]["scored"]:
                working.append(life[-1]["rss_mb"])
    working = working or ends
    base = working[1] if len(working) > 2 else working[0]
    return {"per_life_end_mb": ends, "working_life_end_mb": working,
            "growth_pct": round((working[-1] - base) / base * 100, 1)}


def _run_and_report(args, kind: str, run) -> dict:
    """``run(bench, folder)`` on an embedded broker of its own in a temporary folder (kept with --keep);
    the report written to --out and printed without its samples."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    keep = tempfile.mkdtemp(prefix=f"flights-{kind}-") if args.keep else None
    with (contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix=f"flights-{kind}-")) as tmp, \
            Bench(Path(tmp)) as bench:
        report = asyncio.run(run(bench, Path(tmp)))
    summary = {k: v for k, v in report.items() if k != "samples"}
    if keep:
        summary["kept"] = keep
    print(json.dumps(summary, indent=2), flush=True)  # first: an hour's result never hangs on a file
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    except OSError as error:
        print(f"soak: could not write the report to {args.out}: {error} (the summary is above)", file=sys.stderr)
    return report


def _chaos_main(args) -> int:
    from bench.chaos import chaos, passed, summary_line

    report = _run_and_report(args, "chaos", lambda bench, tmp: chaos(
        bench, tmp, minutes=args.minutes, workers=args.workers, every_s=args.restart_every, outage_s=args.outage,
        rate=args.rate, replay=args.replay, drain_s=args.drain_minutes * 60))
    print(summary_line(report))
    return 0 if passed(report) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--restart-every", type=float, default=None,
                        help="seconds between worker restarts (default 300; with --chaos: between kills, 60)")
    parser.add_argument("--retention-minutes", type=float, default=6,
                        help="the topics' retention (FLIGHTS_RETENTION_HOURS), so the disk must level off within "
                             "the run (default %(default)s)")
    parser.add_argument("--drain-minutes", type=float, default=10,
                        help="how long to wait after sending for every state and window to be right")
    parser.add_argument("--keep", action="store_true",
                        help="keep the broker's data and the worker's log (the folder is printed) to trace a failure")
    parser.add_argument("--out", type=Path, default=None,
                        help="the report's file, or a folder for it (default bench/results/soak.json; with --chaos: "
                             "chaos.json)")
    chaos_args = parser.add_argument_group("chaos mode (bench/chaos.py)")
    chaos_args.add_argument("--chaos", action="store_true",
                            help="N workers, one killed with kill -9 and restarted in turn (every second one on an "
                                 "emptied data directory), one long outage, a scale-up from 1 and back down, and "
                                 "a real Prometheus scraping them with the shipped alert rules")
    chaos_args.add_argument("--workers", type=int, default=3, help="workers after the scale-up (default 3)")
    chaos_args.add_argument("--outage", type=float, default=180,
                            help="seconds the third killed worker stays down (FlightsWorkerDown fires after 2 "
                                 "minutes); 0: none (default %(default)s)")
    chaos_args.add_argument("--replay", type=Path, default=None,
                            help="a recording served by the fake OpenSky server and polled by the workers' "
                                 "source, paced to last --minutes (default: simulated states at --rate)")
    args = parser.parse_args(argv)
    if args.replay is not None and not args.replay.exists():
        parser.error(f"--replay {args.replay}: no such file")
    if args.replay is not None and not args.chaos:
        parser.error("--replay goes with --chaos (the plain soak produces simulated states itself)")
    if args.chaos and args.workers < 2:
        parser.error("--workers must be at least 2 with --chaos")
    if args.restart_every is None:
        args.restart_every = 60 if args.chaos else 300
    name = "chaos.json" if args.chaos else "soak.json"
    if args.out is None:
        args.out = Path("bench/results") / name
    elif args.out.is_dir():  # a folder: the report goes in it (as `python -m bench --out DIR` does)
        args.out = args.out / name
    if args.chaos:
        return _chaos_main(args)
    report = _run_and_report(args, "soak", lambda bench, tmp: soak(
        bench, minutes=args.minutes, rate=args.rate, restart_every_s=args.restart_every,
        retention_min=args.retention_minutes, drain_s=args.drain_minutes * 60))
    # The disk levels off once the retention (plus a segment's time and the broker's minute between
    # checks) has passed: over the second half of a run at least three retentions long it grows < 15%.
    long_enough = args.minutes >= 3 * args.retention_minutes + 5
    disk_ok = not long_enough or (report["disk_growth_second_half_pct"] is not None
                                  and report["disk_growth_second_half_pct"] < 15)
    ok = report["lost"] == 0 and not report["wrong_windows"] and report["closed_windows_checked"] > 0 \
        and report["rss_growth"]["growth_pct"] < 10 and disk_ok
    print(f"soak {'passed' if ok else 'FAILED'}: lost {report['lost']}, wrong windows {len(report['wrong_windows'])} "
          f"of {report['closed_windows_checked']}, RSS growth {report['rss_growth']['growth_pct']}%, "
          f"broker disk {report['broker_disk_mb']} MB (second half {report['disk_growth_second_half_pct']}%"
          f"{'' if long_enough else ', not judged: run at least 3 retentions + 5 min'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
