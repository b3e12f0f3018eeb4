"""Alerts to a webhook: JSON POSTs, retried with backoff, rate-limited per aircraft,
never blocking or slowing the scoring path (a bounded queue; when it is full the
alert is dropped and counted, the scorer does not wait)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

log = logging.getLogger("flights_app.webhook")


@dataclass
class WebhookStats:
    offered: int = 0
    sent: int = 0
    failed: int = 0
    rate_limited: int = 0
    dropped_queue_full: int = 0
    retries: int = 0


@dataclass
class AlertWebhook:
    url: str
    min_interval_s: float = 60.0  # at most one alert per aircraft per this many seconds
    max_queue: int = 1000
    attempts: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    stats: WebhookStats = field(default_factory=WebhookStats)

    def __post_init__(self):
        self._queue: asyncio.Queue = asyncio.Queue(self.max_queue)
        self._last_sent: dict[str, float] = {}

    def offer(self, icao24: str, payload: dict) -> bool:
        """Queue an alert if its aircraft is not rate-limited and the queue has room; never waits."""
        self.stats.offered += 1
        now = self.clock()
        last = self._last_sent.get(icao24)
        if last is not None and now - last < self.min_interval_s:
            self.stats.rate_limited += 1
            return False
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.stats.dropped_queue_full += 1
            return False
        self._last_sent[icao24] = now
        if len(self._last_sent) > 100_000:  # bounded memory: forget aircraft not seen for a while
            cutoff = now - self.min_interval_s
            self._last_sent = {k: v for k, v in self._last_sent.items() if v >= cutoff}
        return True

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Send queued alerts one by one until cancelled."""
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        while True:
            payload = await self._queue.get()
            for attempt in range(self.attempts):
                try:
                    async with session.post(self.url, json=payload, timeout=timeout) as response:
                        if response.status < 500 and response.status != 429:
                            if response.status >= 400:
                                log.warning("Alert webhook refused an alert: HTTP %d", response.status)
                                self.stats.failed += 1
                            else:
                                self.stats.sent += 1
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if attempt + 1 < self.attempts:
                    self.stats.retries += 1
                    await asyncio.sleep(self.backoff_s * 2**attempt)
            else:
                self.stats.failed += 1
                log.warning("Alert webhook unreachable after %d attempts; alert dropped", self.attempts)
