"""Read-only JSON endpoints on the Faust web server."""

from __future__ import annotations

from faust import web

from agents.source import OpenSkySourceService
from flights_app.app import app


@app.page("/source/")
async def source_stats(self: web.View, request: web.Request) -> web.Response:
    """The OpenSky source's counters on this worker (polls, failures, valid, invalid by reason, credits)."""
    service = OpenSkySourceService.instance
    stats = service.source.stats.as_dict() if service and service.source else None
    return self.json({"leader": app.is_leader(), "source": stats})
