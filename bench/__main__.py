"""``make bench``: every benchmark in one run, side by side, as a table.

    python -m bench [--quick] [--out DIR]

Writes ``DIR/bench.json`` and ``DIR/bench.md`` (default bench/results/) and
prints the table. ``--quick`` runs each measurement small (under 2 minutes):
it keeps the harness working; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench import history, scorer
from bench.pipeline import (
    KAFKA_LIB,
    Bench,
    BenchError,
    ceiling,
    fixed_rate,
    growth,
    producer_settings,
    read_records,
    throughput,
)
from bench.workload import check_decodes, simulate
from flights_app.pages import replace_between
from flights_app.topic_names import PROCESSED

RESULTS = Path(__file__).resolve().parent / "results"

#: What each run measures: (full, quick). The throughput workload is 2,000 aircraft x 91 polls
#: with every 10th poll sent twice: 200,000 states, 18,000 of them duplicates.
PLAN = {
    "throughput": ({"aircraft": 2000, "polls": 91, "repeat_every": 10},
                   {"aircraft": 200, "polls": 10, "repeat_every": 5}),
    "memory": ({"aircraft": 40_000, "polls": 2}, {"aircraft": 2000, "polls": 2}),
    # The highest rate kept up for 60 s, searched from 5,000/s (a target of its own): then up by the first
    # step if kept up (8,000/s: the target), else down by the second (two runs: the whole bench must fit
    # in 15 minutes beside the 10-minute run); one run at 300/s in the quick run.
    "latency": ({"start": 5000, "steps": (3000, 2500), "probes": 2, "seconds": 60, "drain_s": 15},
                {"start": 300, "steps": (100, 100), "probes": 1, "seconds": 5, "drain_s": 20}),
    # 1,000 states/s for 10 minutes over the throughput workload's aircraft: latency, and RSS growth.
    "growth": ({"rate": 1000, "seconds": 600, "warmup_s": 60, "drain_s": 30},
               {"rate": 200, "seconds": 8, "warmup_s": 3, "drain_s": 20}),
    # One generated day of history (5,000 aircraft every 10 s: 43.2 million states) and the queries over it.
    "history": ({"aircraft": 5000, "every_s": 10, "hours": 24, "samples": 40},
                {"aircraft": 200, "every_s": 10, "hours": 2, "samples": 5}),
}

#: The Spark Structured Streaming + Streamlit pipeline this app replaces (its published figures).
REPLACED = {"rows_per_s_low": 120, "rows_per_s_high": 170, "latency_s": 1.0}
TARGETS = {"events_per_s": 10_000, "share_of_ceiling": 0.25, "p99_ms_at_1000": 500, "p99_ms_at_5000": 1000,
           "compiled_rows_per_s": 200_000, "single_row_speedup": 20, "rss_mb_40k": 500, "growth_pct": 10,
           "history_query_p95_ms": 500}


def kafka_version() -> str:
    jars = sorted(KAFKA_LIB.glob("kafka_2.13-*.jar"))
    return jars[0].name.removeprefix("kafka_2.13-").removesuffix(".jar") if jars else "?"


def worker_settings() -> dict:
    """The worker's batching settings the figures depend on (their defaults: the benchmark sets none,
    but FLIGHTS_AGGREGATE_FLUSH=1 in the throughput runs)."""
    from flights_app.settings import SETTINGS_DOC

    return {"score_batch": int(SETTINGS_DOC["FLIGHTS_SCORE_BATCH"][0]),
            "score_within_s": float(SETTINGS_DOC["FLIGHTS_SCORE_WITHIN"][0]),
            "aggregate_flush_s": float(SETTINGS_DOC["FLIGHTS_AGGREGATE_FLUSH"][0]),
            "compression": SETTINGS_DOC["FLIGHTS_KAFKA_COMPRESSION"][0]}


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def kafka_runs(quick: bool, tmp: Path) -> dict:
    pick = 1 if quick else 0
    out: dict = {}
    t = PLAN["throughput"][pick]
    say(f"workload: {t['aircraft']:,} aircraft x {t['polls']} polls, every {t['repeat_every']}th poll twice")
    workload = simulate(t["aircraft"], t["polls"], repeat_every=t["repeat_every"])
    check_decodes(workload)
    with Bench(tmp) as bench:
        say(f"ceiling: raw aiokafka, {len(workload):,} records")
        out["ceiling"] = await ceiling(bench, workload)
        say(f"throughput: one worker, {len(workload):,} states")
        out["throughput_1"] = await throughput(bench, workload, workers=1)
        say("history writer: the one-worker run's output topics into Parquet")
        out["history_writer"] = await history.writer_rate(
            bench.broker.url, out["throughput_1"]["processed_topic"].removesuffix(PROCESSED), tmp / "history-run",
            tmp / "history-datadir")
        say("producer settings: the scored records produced again with each")
        records = await read_records(bench, out["throughput_1"]["processed_topic"], bench.partitions,
                                     50_000 if not quick else 5_000)
        out["producer"] = await producer_settings(bench, records)
        say(f"scale-out: two workers, {len(workload):,} states, {bench.partitions} partitions")
        out["throughput_2"] = await throughput(bench, workload, workers=2)
        m = PLAN["memory"][pick]
        say(f"memory: {m['aircraft']:,} aircraft")
        tracked = simulate(m["aircraft"], m["polls"], seed=12)
        out["memory"] = await throughput(bench, tracked, workers=1)
        lat = PLAN["latency"][pick]
        out["latency"] = []
        rate, (up, down) = lat["start"], lat["steps"]
        for _ in range(lat["probes"]):
            say(f"latency: {rate:,} states/s for {lat['seconds']} s")
            run = await fixed_rate(bench, workload, rate=rate, seconds=lat["seconds"], drain_s=lat["drain_s"])
            out["latency"].append(run)
            rate = rate + up if run["kept_up"] else rate - down
            up, down = up // 2, down // 2
        g = PLAN["growth"][pick]
        say(f"latency and memory growth: {g['rate']:,} states/s for {g['seconds']} s")
        run = await fixed_rate(bench, workload, rate=g["rate"], seconds=g["seconds"], drain_s=g["drain_s"],
                               rss_every_s=max(1, g["seconds"] / 60))
        out["latency"].insert(0, run)
        out["growth"] = growth(run["rss"], g["warmup_s"])
    return out


def history_day(quick: bool, tmp: Path) -> dict:
    h = PLAN["history"][1 if quick else 0]
    say(f"history: one day of {h['aircraft']:,} aircraft every {h['every_s']} s ({h['hours']} h) into the layout")
    day = history.generate_day(tmp / "history-day", h["aircraft"], h["every_s"], h["hours"], say=say)
    say(f"history: {h['samples']} area and aircraft questions over it")
    return {"day": day, "queries": history.time_queries(tmp / "history-day", day, h["samples"])}


def evaluate(report: dict) -> list[dict]:
    """Each target of the benchmark issue, its measured figure, and whether it is reached."""
    k = report["kafka"]
    one = k["throughput_1"]["windowed_per_s"]
    share = one / k["ceiling"]["relay_per_s"]
    by_rate = {r["rate_per_s"]: r for r in k["latency"]}
    rows = report["scorer"]["rows"]
    batched = max(r["compiled_rows_per_s"] for r in rows)
    single = next(r["speedup"] for r in rows if r["batch"] == 1)
    warm = k["growth"].get("growth_once_warm_pct")

    kept = [r["rate_per_s"] for r in k["latency"] if r["kept_up"] and r["seconds"] >= 60]
    probes = [r for r in k["latency"] if r["seconds"] == 60]
    highest = max(kept, default=None)
    tried = ", ".join(f"{r['rate_per_s']:,.0f}" for r in probes)
    flush = report["conditions"].get("aggregate_flush_s", 5)
    window_p99 = by_rate[1000]["to_window"]["p99_ms"] if 1000 in by_rate and by_rate[1000]["to_window"]["n"] else None

    def p99(rate):
        r = by_rate.get(rate)
        return None if r is None or not r["kept_up"] else r["to_processed"]["p99_ms"]

    out = [
        ("highest rate kept up for 60 s", ">= 8,000/s",
         (f"{highest:,.0f}/s" if highest else "none") + f" (tried {tried})"
         if probes else "not measured (quick)", highest is not None and highest >= 8000 if probes else None),
        ("window record counting a state, p99 at 1,000/s", f"< {(flush + 1) * 1000:,.0f} ms (flush + 1 s)",
         f"{window_p99:,} ms" if window_p99 is not None else "not measured (quick)",
         window_p99 < (flush + 1) * 1000 if window_p99 is not None else None),
        ("make bench wall time", "< 900 s", f"{report['wall_s']:.0f} s",
         report["wall_s"] < 900 if not report["quick"] else None),
        ("end to end, one worker", f">= {TARGETS['events_per_s']:,} events/s", f"{one:,} events/s",
         one >= TARGETS["events_per_s"]),
        ("share of the raw aiokafka relay", f">= {TARGETS['share_of_ceiling']:.0%}", f"{share:.1%}",
         share >= TARGETS["share_of_ceiling"]),
        ("p99 to flight-processed-data at 1,000/s", f"< {TARGETS['p99_ms_at_1000']} ms", p99(1000), None),
        ("p99 to flight-processed-data at 5,000/s", f"< {TARGETS['p99_ms_at_5000']} ms", p99(5000), None),
        ("compiled scorer, batched", f">= {TARGETS['compiled_rows_per_s']:,} rows/s", f"{batched:,.0f} rows/s",
         batched >= TARGETS["compiled_rows_per_s"]),
        ("compiled vs scikit-learn, single rows", f">= {TARGETS['single_row_speedup']}x", f"{single:,.0f}x",
         single >= TARGETS["single_row_speedup"]),
        (f"worker peak RSS, {k['memory']['aircraft']:,} aircraft", f"< {TARGETS['rss_mb_40k']} MB (40,000 aircraft)",
         f"{k['memory']['peak_rss_mb']} MB", k["memory"]["peak_rss_mb"] < TARGETS["rss_mb_40k"]),
        ("RSS growth once warm (from the first expired window to the end)", f"< {TARGETS['growth_pct']}%",
         f"{warm}%" if warm is not None else "no window expired in the run",
         warm is not None and warm < TARGETS["growth_pct"]),
    ]
    if "history_writer" in k:
        written = k["history_writer"]["records_per_s"]
        out.append(("history writer keeps up with one worker", f">= {one:,} records/s (the one-worker windowed rate)",
                    f"{written:,} records/s", written >= one))
    if "history" in report:
        queries, hours = report["history"]["queries"], report["history"]["day"]["hours"]
        for question, path in (("area", "/history/area/"), ("aircraft", "/history/aircraft/{icao24}/ (whole range)")):
            p95 = queries[question]["p95_ms"]
            out.append((f"p95 of {path}, {report['history']['day']['states']:,} states ({hours} h)",
                        f"< {TARGETS['history_query_p95_ms']} ms", f"{p95:,} ms",
                        p95 < TARGETS["history_query_p95_ms"]))
    result = []
    for name, target, measured, met in out:
        if name.startswith("p99"):
            rate = 1000 if "1,000" in name else 5000
            limit = TARGETS["p99_ms_at_1000"] if rate == 1000 else TARGETS["p99_ms_at_5000"]
            if rate not in by_rate:
                measured, met = "not measured (quick)", None
            elif measured is None:
                run = by_rate[rate]
                measured, met = f"did not keep up ({run['scored']:,} of {run['sent']:,} scored)", False
            else:
                measured, met = f"{measured:,} ms", measured < limit
        result.append({"target": name, "wanted": target, "measured": measured,
                       "reached": "n/a" if met is None else ("yes" if met else "NO")})
    return result


def markdown(report: dict) -> str:
    k, c = report["kafka"], report["conditions"]
    t1, t2, g = k["throughput_1"], k["throughput_2"], k["growth"]
    ceil = k["ceiling"]
    lines = [f"`{report['command']}` on {c['cores']} cores, Python {c['python']}, embedded Kafka {c['kafka']}, "
             f"{c['partitions']} partitions, {c['date']}{' (QUICK: figures mean nothing)' if report['quick'] else ''}; "
             f"worker batches of up to {c.get('score_batch', '?')} states or {c.get('score_within_s', '?')} s "
             f"(FLIGHTS_SCORE_BATCH, FLIGHTS_SCORE_WITHIN); outputs compressed with {c.get('compression', 'none')}.",
             "", "| measurement | figure | conditions |", "|---|---:|---|"]
    row = lines.append
    row(f"| ceiling: aiokafka produce | {ceil['produce_per_s']:,} msg/s | {ceil['records']:,} records of "
        f"{ceil['record_bytes']} B, acks=all |")
    row(f"| ceiling: aiokafka consume | {ceil['consume_per_s']:,} msg/s | same records, no decoding |")
    row(f"| ceiling: aiokafka relay (consume + produce) | {ceil['relay_per_s']:,} msg/s | what a pipeline doing "
        "nothing else reaches |")
    runs = [(t1, "one worker"), (t2, "two workers")]
    if "throughput_1_uncompressed" in k:
        runs.insert(1, (k["throughput_1_uncompressed"], "one worker, outputs not compressed"))
    if "throughput_1_single" in k:  # (runs before 2026-12-01's second run)
        runs.insert(1, (k["throughput_1_single"], "one worker, single-state input"))
    for t, label in runs:
        given = "one record per state" if not t.get("batched_input", False) else "one batch per partition and poll"
        row(f"| pipeline, {label}: scored | {t['scored_per_s']:,} events/s | {t['states']:,} states "
            f"({t['duplicates']:,} duplicates, {t['aircraft']:,} aircraft) preloaded, {given}; first to last record "
            "on flight-processed-data |")
        row(f"| pipeline, {label}: windowed, totals exact | {t['windowed_per_s']:,} events/s | until every window's "
            f"newest record on flight-aggregated-data equals the distinct count; worker CPU {t['worker_cpu_per_wall']} "
            f"cores; peak RSS {t['peak_rss_mb']} MB |")
    if "producer" in k:
        p = k["producer"]
        for r in p["rows"]:
            row(f"| producer: {r['setting']} ({r['compression']}, linger {r['linger_ms']} ms) | {r['records_per_s']:,} "
                f"records/s, {r['stored_bytes_per_record']:,} B stored per record | {p['records']:,} scored records "
                f"of {p['record_bytes']:,} B from the one-worker run, acks=all |")
    row(f"| scale-out: two workers / one | {t2['windowed_per_s'] / t1['windowed_per_s']:.2f}x | {t2['partitions']} "
        "partitions, same machine |")
    row(f"| one worker / raw relay | {t1['windowed_per_s'] / ceil['relay_per_s']:.1%} | |")
    flush = f"; window records at most every {c.get('aggregate_flush_s', 5):g} s (FLIGHTS_AGGREGATE_FLUSH)"
    for r in k["latency"]:
        kept = "" if r["kept_up"] else (f"; did NOT keep up: {r['scored']:,} of {r['sent']:,} scored by the end "
                                        "of the drain")
        for name, pct in (("flight-processed-data", r["to_processed"]), ("window record", r["to_window"])):
            if pct["n"]:
                row(f"| latency at {r['rate_per_s']:,}/s to {name} | p50 {pct['p50_ms']:,} / p95 {pct['p95_ms']:,} / "
                    f"p99 {pct['p99_ms']:,} / max {pct['max_ms']:,} ms | {r['seconds']} s at "
                    f"{r['achieved_input_per_s']:,}/s sent{kept}{flush if name == 'window record' else ''} |")
    mem = k["memory"]
    row(f"| worker peak RSS, {mem['aircraft']:,} aircraft tracked | {mem['peak_rss_mb']} MB | {mem['states']:,} states "
        f"preloaded, one worker ({mem['windowed_per_s']:,} events/s) |")
    row(f"| worker RSS growth | {g['growth_pct']}% | {g['rss_after_warmup_mb']} MB after {g['warmup_s']} s -> "
        f"{g['rss_end_mb']} MB at the end of the {k['latency'][0]['seconds']} s run at "
        f"{k['latency'][0]['rate_per_s']:,}/s |")
    if g.get("growth_once_warm_pct") is not None:
        row(f"| worker RSS growth once warm | {g['growth_once_warm_pct']}% | {g['rss_warm_mb']} MB at "
            f"{g['warm_at_s']} s (the first sample after windows began to expire) -> "
            f"{g['rss_end_mb']} MB at the end; RSS every {g['series'][1][0] - g['series'][0][0]} s: "
            f"{', '.join(str(round(mb)) for _, mb in g['series'])} MB |")
    history_rows(report, row)
    for r in report["scorer"]["rows"]:
        row(f"| scorer, {r['batch']:,} rows | {r['compiled_rows_per_s']:,.0f} vs {r['sklearn_rows_per_s']:,.0f} rows/s "
            f"({r['speedup']:,.1f}x) | compiled vs scikit-learn score_samples, "
            f"{report['scorer']['conditions']['timing']} |")
    rep = REPLACED
    row(f"| replaced system (Spark + Streamlit, published) | {rep['rows_per_s_low']}-{rep['rows_per_s_high']} rows/s, "
        f"< {rep['latency_s']:g} s | ours: {t1['windowed_per_s'] / rep['rows_per_s_high']:.0f}x its upper figure, one "
        "worker |")
    lines += ["", "| target | wanted | measured | reached |", "|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['wanted']} | {t['measured']} | {t['reached']} |" for t in report["targets"]]
    lines.append(f"\nWall time of the whole run: {report['wall_s']:.0f} s.")
    return "\n".join(lines) + "\n"


def history_rows(report: dict, row) -> None:
    """The history's rows of the table: the writer's rate and disk, the generated day and its questions."""
    k = report["kafka"]
    if "history_writer" in k:
        w = k["history_writer"]
        row(f"| history writer | {w['records_per_s']:,} records/s | {w['records']:,} records of the one-worker run's "
            f"output topics; its own consumer group, each range written as Parquet, then committed |")
        disk = history.day_of_global_feed(w["bytes_per_state"])
        mean, peak = disk["mean"], disk["peak"]
        row(f"| history on disk after compaction | {w['bytes_per_state']} B per state | {w['states_kept']:,} states of "
            f"the writer's run kept; a day of the global feed: {mean['gb']:,} GB ({mean['aircraft']:,} aircraft every "
            f"{mean['every_s']} s), {peak['gb']:,} GB at the peak ({peak['aircraft']:,} every {peak['every_s']} s) |")
    if "history" in report:
        d, q = report["history"]["day"], report["history"]["queries"]
        row(f"| history: a generated day | {d['states']:,} states, {d['bytes_per_state']} B per state | "
            f"{d['aircraft']:,} aircraft every {d['every_s']} s for {d['hours']} h in {d['partitions']} partitions, "
            f"written into the layout in {d['write_s']} s |")
        for question, path, what in (("area", "/history/area/", "a 10-degree box at a random moment"),
                                     ("aircraft", "/history/aircraft/{icao24}/", "a random aircraft's whole day")):
            r = q[question]
            row(f"| history: {path} | p50 {r['p50_ms']:,} / p95 {r['p95_ms']:,} / max {r['max_ms']:,} ms | "
                f"{r['n']} questions, {what}, {r['mean_rows']:,} rows on average; the query and the JSON of the "
                "answer, without HTTP |")


PERFORMANCE_PAGE = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")


def update_page(table: str, path: Path = PERFORMANCE_PAGE) -> None:
    """Put the latest full run's table between the bench markers of docs/performance.md."""
    replace_between(path, *MARKERS, table)


def render(path: Path) -> str:
    """The Markdown of a saved report (after a change to the table's layout)."""
    return markdown(json.loads(path.read_text()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="every measurement small (under 2 minutes); figures mean nothing")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="where bench.json and bench.md go (default bench/results)")
    parser.add_argument("--render", type=Path, metavar="JSON", help="only print the table of a saved report")
    args = parser.parse_args(argv)
    if args.render:
        print(render(args.render))
        return 0
    # A SIGTERM unwinds like Ctrl-C, so every worker and the broker are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    say("scorer: scikit-learn vs compiled")
    report = {"command": "python -m bench" + (" --quick" if args.quick else ""), "quick": args.quick,
              "scorer": scorer.run(args.quick)}
    try:
        with tempfile.TemporaryDirectory(prefix="flights-bench-") as tmp:
            report["kafka"] = asyncio.run(kafka_runs(args.quick, Path(tmp)))
            report["history"] = history_day(args.quick, Path(tmp))
    except BenchError as error:
        print(f"bench: a run failed, no figures reported: {error}", file=sys.stderr)
        return 1
    report["conditions"] = {"cores": os.cpu_count(), "python": platform.python_version(), "kafka": kafka_version(),
                            "partitions": report["kafka"]["throughput_1"]["partitions"],
                            "date": time.strftime("%Y-%m-%d"), **worker_settings()}
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["targets"] = evaluate(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / "bench.md").write_text(text)
    if not args.quick and args.out == RESULTS:
        update_page(text)  # docs/performance.md shows the latest full run
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
