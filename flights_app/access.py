"""Who may ask the worker's web server what: a bearer token (FLIGHTS_WEB_TOKEN_FILE).

    bound to loopback:   every read-only path is open; POST /model/reload needs the token
    bound beyond it:     every path but /health and /metrics needs the token

The token travels as ``Authorization: Bearer <token>``; it is compared in constant time and
never written to a log or an answer. Faust forwards a routed request's headers to the worker
that owns the key, and the worker's own calls to its peers send the token, so a request let in
by one worker is let in by the others.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from flights_app.settings import Settings, is_loopback

#: Paths answered without the token wherever the server binds (probes and the Prometheus scrape).
OPEN_PATHS = frozenset({"/health", "/metrics"})
#: Paths that change something: always behind the token.
GUARDED_PATHS = frozenset({"/model/reload"})


def needs_token(path: str, method: str, loopback: bool) -> bool:
    """Whether a request for ``path`` must carry the bearer token."""
    path = path.rstrip("/") or "/"
    if path in GUARDED_PATHS or method not in ("GET", "HEAD", "OPTIONS"):
        return True
    return not loopback and path not in OPEN_PATHS


def authorization(token: str | None) -> dict[str, str]:
    """The header a client of the worker sends (nothing without a token)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def token_in(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def middleware(settings: Settings):
    """The aiohttp middleware enforcing the rules above for ``settings``' bind address and token."""
    loopback = is_loopback(settings.web_bind)
    expected = (settings.web_token or "").encode()

    @web.middleware
    async def require_token(request: web.Request, handler):
        if needs_token(request.path, request.method, loopback):
            given = token_in(request)
            if not expected:
                return web.json_response({"error": "this needs the bearer token, and the worker has none "
                                                   "configured (FLIGHTS_WEB_TOKEN_FILE)"}, status=403)
            if given is None or not hmac.compare_digest(given.encode(), expected):
                return web.json_response({"error": "missing or wrong bearer token (Authorization: Bearer ...)"},
                                         status=401, headers={"WWW-Authenticate": 'Bearer realm="flights-app"'})
        return await handler(request)

    return require_token
