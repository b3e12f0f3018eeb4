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
        await HistoryWriter(settings).run(stop)

    asyncio.run(run())


def cmd_history(settings, args: argparse.Namespace, fail) -> None:
    from flights_app.history.query import (  # DuckDB and pyarrow load only for this command
        History,
        QueryError,
        parse_bbox,
        parse_dimension,
        parse_icao24,
        parse_kind,
        parse_range,
        parse_time,
    )
    from tables.dimensions import DIMENSIONS

    history = History(settings.history_dir)
    try:
        if args.question == "aircraft":
            answer = history.aircraft(parse_icao24(args.icao24), *parse_range(args.start, args.end,
                                                                               settings.history_max_hours))
        elif args.question == "area":
            answer = history.area(parse_bbox(args.bbox), parse_time("at", args.at))
        elif args.question == "anomalies":
            answer = history.anomalies(*parse_range(args.start, args.end, settings.history_max_hours),
                                       parse_kind(args.kind))
        else:
            answer = history.windows(parse_dimension(args.dimension, tuple(d.name for d in DIMENSIONS)),
                                     *parse_range(args.start, args.end, settings.history_max_hours))
    except QueryError as error:
        raise fail(str(error)) from None
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(answer.columns)
            out.writerows(answer.rows)
        print(f"flights-app: {len(answer.rows)} rows written to {args.csv}")
    if args.parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(answer.as_dicts()), args.parquet)
        print(f"flights-app: {len(answer.rows)} rows written to {args.parquet}")
    if not args.csv and not args.parquet:
        print_table(answer)


def print_table(answer, most: int = 200) -> None:
    if not answer.rows:
        print("(no rows)")
        return
    shown = [[("" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)) for v in row]
             for row in answer.rows[:most]]
    widths = [min(24, max(len(c), *(len(r[i]) for r in shown))) for i, c in enumerate(answer.columns)]
    print("  ".join(c[:w].ljust(w) for c, w in zip(answer.columns, widths, strict=True)))
    for row in shown:
        print("  ".join(v[:w].ljust(w) for v, w in zip(row, widths, strict=True)))
    if len(answer.rows) > most:
        print(f"... {len(answer.rows) - most} more rows (--csv or --parquet writes them all)", file=sys.stderr)
