"""Read-only JSON endpoints on the Faust web server."""

from __future__ import annotations

from faust import web

from agents import windows
from agents.scoring import registry, stats
from agents.source import OpenSkySourceService
from flights_app.app import app, settings


@app.page("/source/")
async def source_stats(self: web.View, request: web.Request) -> web.Response:
    """The OpenSky source's counters on this worker (polls, failures, valid, invalid by reason, credits)."""
    service = OpenSkySourceService.instance
    stats = service.source.stats.as_dict() if service and service.source else None
    return self.json({"leader": app.is_leader(), "source": stats})


def _model_summary() -> dict | None:
    model = registry.current
    if model is None:
        return None
    keep = ("version", "sha256", "sklearn_version", "features", "training_rows", "training_source", "params",
            "threshold", "created_at")
    return {k: model.manifest.get(k) for k in keep} | {"path": str(model.path)}


@app.page("/model/")
async def model_info(self: web.View, request: web.Request) -> web.Response:
    """The model this worker scores with, and the scorer's batch figures."""
    return self.json({"model": _model_summary(), "scorer": {
        "batches": stats.batches, "events": stats.events, "anomalies": stats.anomalies, "alerts": stats.alerts,
        "last_batch_size": stats.last_batch_size, "last_batch_ms": round(stats.last_batch_ms, 3)}})


@app.page("/model/reload")
class ModelReload(web.View):
    """``POST``: load the model file again now (only with FLIGHTS_MODEL_RELOAD_ENDPOINT=1)."""

    async def post(self, request: web.Request) -> web.Response:
        if not settings.model_reload_endpoint:
            return self.json({"error": "model reload is disabled (set FLIGHTS_MODEL_RELOAD_ENDPOINT=1)"}, status=403)
        import asyncio

        reloaded, message = await asyncio.get_running_loop().run_in_executor(None, registry.reload)
        return self.json({"reloaded": reloaded, "message": message, "model": _model_summary()},
                         status=200 if reloaded or "already loaded" in message else 409)


def _windows_of(dimension: str) -> dict[str, list[int]]:
    names: dict[str, list[int]] = {}
    for dim, name, start in windows.known_windows():
        if dim == dimension:
            names.setdefault(name, []).append(start)
    return names


def _pick_window(request: web.Request, starts: list[int]) -> int | None | str:
    """``?window=current`` (default), ``previous`` or a window start; an error text if malformed."""
    wanted = request.query.get("window", "current")
    if not starts:
        return None
    latest = max(starts)
    if wanted == "current":
        return latest
    if wanted == "previous":
        return latest - windows.SIZE
    try:
        return windows.window_start(int(wanted), windows.SIZE)
    except ValueError:
        return "window must be current, previous or a Unix time"


def _group_stats(dimension: str):
    async def view(self: web.View, request: web.Request) -> web.Response:
        by_name = _windows_of(dimension)
        start = _pick_window(request, [s for starts in by_name.values() for s in starts])
        if isinstance(start, str):
            return self.json({"error": start}, status=400)
        rows = []
        if start is not None:
            for name in sorted(by_name):
                summary = windows.window_summary(dimension, name, start)
                if summary is not None:
                    rows.append(summary)
        rows.sort(key=lambda r: -r["events"])
        plural = "countries" if dimension == "country" else "airlines"
        return self.json({"window_start": start, "window_end": None if start is None else start + windows.SIZE,
                          plural: rows})
    return view


app.page("/stats/countries/")(_group_stats("country"))
app.page("/stats/airlines/")(_group_stats("airline"))


@app.page("/stats/countries/{country}/")
async def country_windows(self: web.View, request: web.Request, country: str) -> web.Response:
    """The recent windows of one country, newest first; 404 if it has none."""
    starts = sorted(_windows_of("country").get(country, []), reverse=True)
    if not starts:
        return self.json({"error": f"no windows for country {country!r}"}, status=404)
    return self.json({"country": country,
                      "windows": [windows.window_summary("country", country, s) for s in starts]})


@app.page("/stats/windows/")
async def window_counters(self: web.View, request: web.Request) -> web.Response:
    """Deduplication and windowing counters of this worker."""
    s = windows.stats
    return self.json({"states": s.states, "duplicates_dropped": s.duplicates_dropped, "late_events": s.late_events,
                      "partials_sent": s.partials_sent, "records_published": s.records_published,
                      "finals_published": s.finals_published, "watermark": windows.group_watermark["event_time"]})
