"""``flights-app history-writer`` and ``flights-app history ...`` (the CLI's part of the history)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import signal
import sys
from pathlib import Path


def add_parsers(sub) -> None:
    sub.add_parser("history-writer", help="keep the output topics as Parquet under FLIGHTS_HISTORY_DIR "
                                          "(started by `up`)")
    history = sub.add_parser("history", help="ask the history (DuckDB over FLIGHTS_HISTORY_DIR); times as Unix "
                                             "seconds or ISO 8601")
    kinds = history.add_subparsers(dest="question", required=True)
    aircraft = kinds.add_parser("aircraft", help="one aircraft's track with its scores")
    aircraft.add_argument("icao24")
    area = kinds.add_parser("area", help="every aircraft in a box at one moment")
    area.add_argument("--bbox", required=True, help="lamin,lomin,lamax,lomax")
    area.add_argument("--at", required=True)
    anomalies = kinds.add_parser("anomalies", help="the flagged states of a range")
    anomalies.add_argument("--kind", default="any", help="model, fault or any (default)")
    windows = kinds.add_parser("windows", help="the window records of one dimension")
    windows.add_argument("dimension")
    for question in (aircraft, anomalies, windows):
        question.add_argument("--from", dest="start", required=True)
        question.add_argument("--to", dest="end", required=True)
    for question in (aircraft, area, anomalies, windows):
        question.add_argument("--csv", type=Path, help="write the rows as CSV to this file")
        question.add_argument("--parquet", type=Path, help="write the rows as Parquet to this file")


def cmd_history_writer(settings) -> None:
    from flights_app.history.writer import HistoryWriter

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        writer = HistoryWriter(settings)
        runner = await serve(writer, settings.web_bind, settings.history_port)
        try:
            await writer.run(stop)
        finally:
            await runner.cleanup()

    asyncio.run(run())


async def serve(writer, bind: str, port: int):
    """The writer's ``/metrics`` (its counters and lag, and the process's) and ``/health``, on ``bind:port``."""
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest

    registry = CollectorRegistry(auto_describe=True)
    registry.register(writer.stats)
    ProcessCollector(registry=registry)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(request: web.Request) -> web.Response:
        consumer = writer.consumer
        assigned = len(consumer.assignment()) if consumer is not None else 0
        ok = consumer is not None and bool(consumer.subscription())
        return web.json_response({"status": "ok" if ok else "starting", "assigned_partitions": assigned,
                                  "lag": writer.stats.lag}, status=200 if ok else 503)

    application = web.Application()
    application.router.add_get("/metrics", metrics)
    application.router.add_get("/health", health)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, bind, port).start()
    except OSError as error:
        await runner.cleanup()
        raise SystemExit(f"flights-app: the history writer cannot listen on {bind}:{port} ({error.strerror}); "
                         "set FLIGHTS_HISTORY_PORT to a free port") from None
    return runner


def cmd_history(settings, args: argparse.Namespace, fail) -> None:
    from flights_app.history.query import History, QueryError, ask  # DuckDB and pyarrow load only here
    from tables.dimensions import DIMENSIONS

    given = {"icao24": getattr(args, "icao24", None), "bbox": getattr(args, "bbox", None),
             "at": getattr(args, "at", None), "kind": getattr(args, "kind", None),
             "dimension": getattr(args, "dimension", None), "from": getattr(args, "start", None),
             "to": getattr(args, "end", None)}
    try:
        answer = ask(History(settings.history_dir), args.question, given, max_hours=settings.history_max_hours,
                     dimensions=tuple(d.name for d in DIMENSIONS))
    except QueryError as error:
        raise fail(str(error)) from None
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(answer.columns)
            out.writerows(answer.rows)
        print(f"flights-app: {answer.count} rows written to {args.csv}")
    if args.parquet:
        import pyarrow.parquet as pq

        pq.write_table(answer.table, args.parquet)
        print(f"flights-app: {answer.count} rows written to {args.parquet}")
    if not args.csv and not args.parquet:
        print_table(answer)
    if answer.truncated:
        print(f"flights-app: only the first {answer.count} rows (a narrower range or box gives all)",
              file=sys.stderr)


def print_table(answer, most: int = 200) -> None:
    if not answer.count:
        print("(no rows)")
        return
    shown = [[("" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)) for v in row]
             for row in answer.head(most)]
    widths = [min(24, max(len(c), *(len(r[i]) for r in shown))) for i, c in enumerate(answer.columns)]
    print("  ".join(c[:w].ljust(w) for c, w in zip(answer.columns, widths, strict=True)))
    for row in shown:
        print("  ".join(v[:w].ljust(w) for v, w in zip(row, widths, strict=True)))
    if answer.count > most:
        print(f"... {answer.count - most} more rows (--csv or --parquet writes them all)", file=sys.stderr)
