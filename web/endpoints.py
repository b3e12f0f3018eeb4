"""Read-only JSON endpoints on the Faust web server.

With several workers each holds the tables of its partitions: a request for one
key (``/aircraft/{icao24}/``, ``/stats/countries/{country}/``) is routed to the
worker that owns it (Faust's table routing, ``app.router.route_req``); a listing
(``/stats/countries/``, ``/stats/airlines/``) asks every worker for its part
(``?scope=local``) and merges. Faust's own ``/table/{name}/{key}/`` routes too.
"""

from __future__ import annotations

import asyncio

import aiohttp
from faust import web
from faust.app.router import SameNode

from agents.scoring import stage as scoring
from agents.source import stage as source_stage
from agents.windows import stage as windows
from flights_app.access import authorization
from flights_app.app import app, settings
from flights_app.decode import rejections
from flights_app.records import event_time_of
from tables.aircraft import aircraft as aircraft_table
from tables.dimensions import DIMENSIONS
from tables.keys import group_name
from web import health, history, metrics, params  # noqa: F401 - /health, /history/..., /metrics

PEER_TIMEOUT_S = 5.0


@app.page("/source/")
async def source_stats(self: web.View, request: web.Request) -> web.Response:
    """The OpenSky source's counters on this worker (polls, failures, valid, invalid by reason, credits)."""
    stats = source_stage.stats.as_dict() if source_stage.source is not None else None
    return self.json({"leader": app.is_leader(), "source": stats})


def _model_summary() -> dict | None:
    model = scoring.registry.current
    if model is None:
        return None
    keep = ("version", "sha256", "sklearn_version", "features", "training_rows", "training_source", "params",
            "threshold", "created_at")
    return {k: model.manifest.get(k) for k in keep} | {"path": str(model.path)}


@app.page("/model/")
async def model_info(self: web.View, request: web.Request) -> web.Response:
    """The model this worker scores with, and the scorer's batch figures."""
    counters = scoring.stats.as_dict()
    return self.json({"model": _model_summary(), "scorer": {
        **counters, "last_batch_ms": round(counters["last_batch_ms"], 3)}})


@app.page("/model/reload")
class ModelReload(web.View):
    """``POST``: load the model file again now (only with FLIGHTS_MODEL_RELOAD_ENDPOINT=1)."""

    async def post(self, request: web.Request) -> web.Response:
        if not settings.model_reload_endpoint:
            return self.json({"error": "model reload is disabled (set FLIGHTS_MODEL_RELOAD_ENDPOINT=1)"}, status=403)

        reloaded, message = await asyncio.get_running_loop().run_in_executor(None, scoring.registry.reload)
        return self.json({"reloaded": reloaded, "message": message, "model": _model_summary()},
                         status=200 if reloaded or "already loaded" in message else 409)


def _peers() -> list[str]:
    """The web URLs of the other workers holding table partitions (Faust's assignor metadata)."""
    me = str(app.conf.canonical_url).rstrip("/")
    return sorted({str(url).rstrip("/") for url in app.router.tables_metadata()} - {me})


async def _peer_rows(peer: str, path: str) -> list[dict]:
    timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
    async with app.http_client.get(f"{peer}{path}", params={"scope": "local"}, timeout=timeout,
                                   headers=authorization(settings.web_token)) as response:
        response.raise_for_status()
        return (await response.json())["rows"]


def _group_stats(dimension: str, plural: str):
    async def view(self: web.View, request: web.Request) -> web.Response:
        if request.query.get("scope") == "local":  # one worker's part, for the merging worker
            return self.json({"rows": windows.summaries(dimension)})
        rows = windows.summaries(dimension)
        peers = _peers()
        answers = await asyncio.gather(*(_peer_rows(p, request.path) for p in peers),
                                       return_exceptions=True)
        unreachable = [p for p, a in zip(peers, answers, strict=True) if isinstance(a, BaseException)]
        for answer in answers:
            if not isinstance(answer, BaseException):
                rows += answer
        start = params.pick_window(request.query.get("window", "current"), {r["window_start"] for r in rows},
                                   windows.size_s)
        if isinstance(start, str):
            return self.json({"error": start}, status=400)
        chosen = sorted((r for r in rows if r["window_start"] == start), key=lambda r: (-r["events"], r["name"]))
        body = {"window_start": start, "window_end": None if start is None else start + windows.size_s,
                "workers": 1 + len(peers) - len(unreachable), plural: chosen}
        if unreachable:
            body["unreachable_workers"] = unreachable
        return self.json(body, status=200 if not unreachable else 206)
    return view


for _dimension in DIMENSIONS:  # /stats/countries/, /stats/airlines/, ...: one per declared dimension
    app.page(f"/stats/{_dimension.plural}/")(_group_stats(_dimension.name, _dimension.plural))


async def _routed(self: web.View, request: web.Request, table: str, key: str):
    """The owner's answer if another worker owns ``key``; None if this one does."""
    try:
        return await app.router.route_req(table, key, self.web, request)
    except SameNode:
        return None


def _group_windows(dimension: str):
    async def view(self: web.View, request: web.Request, name: str) -> web.Response:
        """The recent windows of one group (a country, an airline, ...), newest first; 404 if it has none."""
        routed = await _routed(self, request, windows.groups.name, group_name(dimension, name))
        if routed is not None:
            return routed
        found = windows.windows_of_group(dimension, name)
        if not found:
            return self.json({"error": f"no windows for {dimension} {name!r}"}, status=404)
        return self.json({dimension: name, "windows": found})
    return view


for _dimension in DIMENSIONS:  # /stats/countries/{name}/, ...
    app.page(f"/stats/{_dimension.plural}/{{name}}/")(_group_windows(_dimension.name))


@app.page("/aircraft/{icao24}/")
async def aircraft(self: web.View, request: web.Request, icao24: str) -> web.Response:
    """An aircraft's last scored state (state, phase, score, reason, alerts); 404 if never seen."""
    icao24 = params.icao24(icao24)
    if icao24 is None:
        return self.json({"error": "icao24 is six hexadecimal digits, e.g. a0b1c2"}, status=400)
    routed = await _routed(self, request, aircraft_table.name, icao24)
    if routed is not None:
        return routed
    value = aircraft_table.get(icao24)
    if not value or not value.get("last"):
        return self.json({"error": f"aircraft {icao24} not seen"}, status=404)
    last = value["last"]
    return self.json({"icao24": icao24, **last, "state": {**last["state"], "event_time": event_time_of(last["state"])}})


@app.page("/stats/windows/")
async def window_counters(self: web.View, request: web.Request) -> web.Response:
    """Deduplication and windowing counters of this worker, and its group stage's event-time watermarks
    (the lowest, and one per partition of flight-window-partials it has heard)."""
    return self.json(windows.counters())


@app.page("/stats/rejected/")
async def rejected_messages(self: web.View, request: web.Request) -> web.Response:
    """Malformed messages this worker's agents rejected to flight-invalid-data: topic -> reason -> count."""
    return self.json({"rejected": rejections.as_dict()})
