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

from flights_app.metrics import Metric, StageMetrics

log = logging.getLogger("flights_app.webhook")


#: The alert webhook's counters (exported by /metrics).
WEBHOOK_METRICS = (
    Metric("offered", "flights_webhook_offered", "Alerts offered to the webhook"),
    Metric("sent", "flights_webhook_sent", "Alerts the webhook accepted"),
    Metric("failed", "flights_webhook_failed", "Alerts refused by the webhook or dropped after every attempt"),
    Metric("rate_limited", "flights_webhook_rate_limited", "Alerts not sent: the aircraft had one within a minute"),
    Metric("dropped_queue_full", "flights_webhook_dropped_queue_full", "Alerts dropped: the webhook's queue was full"),
    Metric("retries", "flights_webhook_retries", "Webhook requests tried again"),
)


@dataclass
class AlertWebhook:
    url: str
    min_interval_s: float = 60.0  # at most one alert per aircraft per this many seconds
    max_queue: int = 1000
    attempts: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    stats: StageMetrics = field(default_factory=lambda: StageMetrics(WEBHOOK_METRICS))

    def __post_init__(self):
        self._queue: asyncio.Queue = asyncio.Queue(self.max_queue)
        self._last_sent: dict[str, float] = {}

    def offer(self, icao24: str, payload: dict) -> bool:
        """Queue an alert if its aircraft is not rate-limited and the queue has room; never waits."""
        self.stats.inc("offered")
        now = self.clock()
        last = self._last_sent.get(icao24)
        if last is not None and now - last < self.min_interval_s:
            self.stats.inc("rate_limited")
            return False
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.stats.inc("dropped_queue_full")
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
                                self.stats.inc("failed")
                            else:
                                self.stats.inc("sent")
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if attempt + 1 < self.attempts:
                    self.stats.inc("retries")
                    await asyncio.sleep(self.backoff_s * 2**attempt)
            else:
                self.stats.inc("failed")
                log.warning("Alert webhook unreachable after %d attempts; alert dropped", self.attempts)
