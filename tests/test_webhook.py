"""The alert webhook: retries, per-aircraft rate limit, and a full queue that never blocks."""

import asyncio

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from flights_app.webhook import AlertWebhook


def test_alerts_are_retried_rate_limited_per_aircraft_and_never_block():
    received, failures_left = [], [2]
    enough = asyncio.Event()
    expected = []  # how many deliveries make "enough", known once the offers are made

    async def hook(request):
        if failures_left[0]:
            failures_left[0] -= 1
            return web.Response(status=503)
        received.append(await request.json())
        if expected and len(received) >= expected[0]:
            enough.set()
        return web.Response(status=204)

    async def scenario():
        app = web.Application()
        app.router.add_post("/hook", hook)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        now = [0.0]
        webhook = AlertWebhook(str(server.make_url("/hook")), min_interval_s=60, max_queue=3,
                               backoff_s=0.01, clock=lambda: now[0])
        async with aiohttp.ClientSession() as session:
            sender = asyncio.create_task(webhook.run(session))
            assert webhook.offer("aaaaaa", {"icao24": "aaaaaa", "n": 1})
            assert not webhook.offer("aaaaaa", {"icao24": "aaaaaa", "n": 2})  # within a minute: limited
            now[0] = 61.0
            assert webhook.offer("aaaaaa", {"icao24": "aaaaaa", "n": 3})
            assert webhook.offer("bbbbbb", {"icao24": "bbbbbb", "n": 4})
            offered_full = [webhook.offer(f"c{i:05d}", {"n": 10 + i}) for i in range(10)]  # queue of 3
            expected.append(3 + offered_full.count(True))
            if len(received) >= expected[0]:
                enough.set()
            await asyncio.wait_for(enough.wait(), timeout=10)
            sender.cancel()
        await server.close()
        return webhook, offered_full

    webhook, offered_full = asyncio.run(scenario())
    assert [r["n"] for r in received][:3] == [1, 3, 4]  # the first survived two 503s
    assert webhook.stats.retries == 2 and webhook.stats.rate_limited == 1
    assert offered_full.count(False) == webhook.stats.dropped_queue_full > 0  # dropped, not waited for
    assert webhook.stats.sent == len(received)
