"""Who may ask the worker's web server what (flights_app/access.py), and the settings that arm it.

The rules are checked over real HTTP: the middleware in an aiohttp server on 127.0.0.1, configured
as a worker bound beyond loopback and as one bound to loopback (the whole worker on loopback, with
its token, is in test_scoring_pipeline's model reload test)."""

from __future__ import annotations

import asyncio
import json
import secrets

import aiohttp
import pytest
from aiohttp import web

from flights_app.access import authorization, middleware, needs_token
from flights_app.settings import SettingsError, is_loopback, load_settings
from tests.harness import free_port

PATHS = ["/health", "/metrics", "/stats/countries/", "/table/aircraft/abc123/", "/model/"]


def test_which_requests_need_the_token():
    for path in PATHS:
        assert not needs_token(path, "GET", loopback=True), path
        assert needs_token(path, "GET", loopback=False) == (path.rstrip("/") not in ("/health", "/metrics")), path
    for loopback in (True, False):
        assert needs_token("/model/reload", "POST", loopback)
        assert needs_token("/model/reload/", "GET", loopback)
        assert needs_token("/stats/countries/", "POST", loopback)  # anything that is not a read
    assert [b for b in ("127.0.0.1", "127.0.1.1", "::1", "localhost", "0.0.0.0", "10.0.0.5", "::")
            if is_loopback(b)] == ["127.0.0.1", "127.0.1.1", "::1", "localhost"]


def _environ(tmp_path, **extra) -> dict:
    return {"FLIGHTS_DATADIR": str(tmp_path), **extra}


def test_beyond_loopback_the_worker_and_the_dashboard_need_their_secrets(tmp_path):
    token_file, users_file = tmp_path / "token", tmp_path / "users.json"
    token_file.write_text("t" * 32)
    users_file.write_text(json.dumps({"ops": "a long password"}))
    with pytest.raises(SettingsError, match="FLIGHTS_WEB_TOKEN_FILE"):
        load_settings(_environ(tmp_path, FLIGHTS_WEB_BIND="0.0.0.0"))
    worker = load_settings(_environ(tmp_path, FLIGHTS_WEB_BIND="0.0.0.0", FLIGHTS_WEB_TOKEN_FILE=str(token_file)))
    assert "FLIGHTS_DASHBOARD_AUTH_FILE" in worker.dashboard_problem()  # the dashboard will not start so
    assert load_settings(_environ(tmp_path)).dashboard_problem() is None  # on loopback it may
    with pytest.raises(SettingsError, match="POST /model/reload always asks for the bearer token"):
        load_settings(_environ(tmp_path, FLIGHTS_MODEL_RELOAD_ENDPOINT="1"))
    settings = load_settings(_environ(tmp_path, FLIGHTS_WEB_BIND="0.0.0.0", FLIGHTS_WEB_TOKEN_FILE=str(token_file),
                                      FLIGHTS_DASHBOARD_AUTH_FILE=str(users_file)))
    assert settings.web_token == "t" * 32 and settings.dashboard_auth_file == users_file
    assert settings.dashboard_problem() is None
    assert "t" * 32 not in repr(settings)


@pytest.mark.parametrize("content, said", [
    (None, "no such file"),
    ("short", "at least 16 characters"),
    ("two words" * 4, "one word"),
])
def test_a_bad_token_file_is_refused_without_showing_it(tmp_path, content, said):
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError, match=said) as refused:
        load_settings(_environ(tmp_path, FLIGHTS_WEB_TOKEN_FILE=str(path)))
    assert content is None or content not in str(refused.value)


@pytest.mark.parametrize("content", ["not json", "[]", "{}", '{"ops": ""}', '{"ops": 5}'])
def test_a_bad_users_file_is_refused_in_one_line(tmp_path, content):
    path = tmp_path / "users.json"
    path.write_text(content)
    with pytest.raises(SettingsError, match="FLIGHTS_DASHBOARD_AUTH_FILE"):
        load_settings(_environ(tmp_path, FLIGHTS_DASHBOARD_AUTH_FILE=str(path)))


async def _answers(settings, requests) -> list[int]:
    """Serve every path with ``settings``' middleware on 127.0.0.1; the status of each (method, path, token)."""
    async def ok(request):
        return web.json_response({"ok": True})

    server = web.Application(middlewares=[middleware(settings)])
    server.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(server)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            out = []
            for method, path, token in requests:
                async with session.request(method, f"http://127.0.0.1:{port}{path}",
                                           headers=authorization(token)) as response:
                    body = await response.text()
                    assert settings.web_token is None or settings.web_token not in body
                    out.append(response.status)
            return out
    finally:
        await runner.cleanup()


def test_beyond_loopback_every_path_but_health_and_metrics_needs_the_right_token(tmp_path):
    token = secrets.token_urlsafe(24)
    (tmp_path / "token").write_text(token)
    (tmp_path / "users.json").write_text('{"ops": "pw"}')
    settings = load_settings(_environ(tmp_path, FLIGHTS_WEB_BIND="0.0.0.0",
                                      FLIGHTS_WEB_TOKEN_FILE=str(tmp_path / "token"),
                                      FLIGHTS_DASHBOARD_AUTH_FILE=str(tmp_path / "users.json")))
    wrong = secrets.token_urlsafe(24)
    requests = [(m, p, t) for p in [*PATHS, "/model/reload"] for t in (None, wrong, token)
                for m in (["POST"] if p == "/model/reload" else ["GET"])]
    statuses = asyncio.run(_answers(settings, requests))
    for (method, path, token_sent), status in zip(requests, statuses, strict=True):
        open_path = path in ("/health", "/metrics")
        assert status == (200 if open_path or token_sent == token else 401), (method, path, token_sent, status)


def test_on_loopback_reads_are_open_and_the_reload_needs_the_token(tmp_path):
    token = secrets.token_urlsafe(24)
    (tmp_path / "token").write_text(token)
    settings = load_settings(_environ(tmp_path, FLIGHTS_WEB_TOKEN_FILE=str(tmp_path / "token")))
    requests = [("GET", p, None) for p in PATHS] + [("POST", "/model/reload", t) for t in (None, "x" * 20, token)]
    assert asyncio.run(_answers(settings, requests)) == [200] * len(PATHS) + [401, 401, 200]
    # Without a token configured nothing can reload, and the answer says what is missing.
    no_token = load_settings(_environ(tmp_path))
    assert asyncio.run(_answers(no_token, [("POST", "/model/reload", token), ("GET", "/model/", None)])) == [403, 200]
