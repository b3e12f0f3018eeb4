"""``/history/...``: the history's questions (flights_app/history/query.py) over the worker's web server.

Every worker reads the same files (FLIGHTS_HISTORY_DIR, shared storage with several workers), so any
worker answers; no routing. Queries run on a small thread pool of their own, never on the event loop
that scores. A parameter out of what is accepted is a 400 saying what is.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from faust import web

from flights_app.app import app, settings
from tables.dimensions import DIMENSIONS

#: At most this many history queries run at once on a worker (DuckDB spreads each over the cores).
QUERY_THREADS = 2
_pool = ThreadPoolExecutor(max_workers=QUERY_THREADS, thread_name_prefix="history-query")


def answer(question: str, given: dict) -> tuple[int, dict]:
    """(status, body) for one question; a bad parameter is a 400 with what is accepted."""
    from flights_app.history.query import History, respond  # DuckDB loads on the first question

    return respond(History(settings.history_dir), question, given, max_hours=settings.history_max_hours,
                   dimensions=tuple(d.name for d in DIMENSIONS))


async def _respond(view: web.View, question: str, given: dict) -> web.Response:
    status, body = await asyncio.get_running_loop().run_in_executor(_pool, partial(answer, question, given))
    return view.json(body, status=status)


def _query(request: web.Request, *names: str) -> dict:
    return {name: request.query.get(name) for name in names}


@app.page("/history/aircraft/{icao24}/")
async def history_aircraft(self: web.View, request: web.Request, icao24: str) -> web.Response:
    """One aircraft's track over ``?from=&to=`` with its scores and flags."""
    return await _respond(self, "aircraft", {"icao24": icao24, **_query(request, "from", "to")})


@app.page("/history/area/")
async def history_area(self: web.View, request: web.Request) -> web.Response:
    """Every aircraft in ``?bbox=lamin,lomin,lamax,lomax`` at ``?at=`` (its newest state within 15 s before)."""
    return await _respond(self, "area", _query(request, "bbox", "at"))


@app.page("/history/anomalies/")
async def history_anomalies(self: web.View, request: web.Request) -> web.Response:
    """The flagged states over ``?from=&to=``; ``?kind=model|fault|any``."""
    return await _respond(self, "anomalies", _query(request, "from", "to", "kind"))


@app.page("/history/windows/{dimension}/")
async def history_windows(self: web.View, request: web.Request, dimension: str) -> web.Response:
    """Each window of a dimension starting in ``?from=&to=``: its final record, else its newest."""
    return await _respond(self, "windows", {"dimension": dimension, **_query(request, "from", "to")})
