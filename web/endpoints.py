"""Read-only JSON endpoints on the Faust web server."""

from __future__ import annotations

from faust import web

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
