"""Alerts to people: a webhook (JSON, or Slack's incoming-webhook format) and e-mail over SMTP.

Each channel has a bounded queue, at most one alert per aircraft a minute, and retries with backoff;
offering an alert never blocks or slows the scoring (when the queue is full the alert is dropped and
counted). A refusal that a retry cannot mend (HTTP 4xx, a recipient or login refused) is counted as
failed at once; a transient one (5xx, 429, a lost connection) is tried again.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING

import aiohttp

from flights_app.metrics import Metric, StageMetrics

if TYPE_CHECKING:
    from flights_app.settings import AlertMail

log = logging.getLogger("flights_app.notify")


class Undeliverable(Exception):
    """The receiver refused the alert for good (trying again would be refused the same)."""


class TryAgain(Exception):
    """The receiver is busy or failing now (HTTP 5xx or 429)."""


#: What a channel tries again: a busy receiver, a lost or refused connection, a timeout, SMTP's transient errors.
TRANSIENT = (TryAgain, aiohttp.ClientError, TimeoutError, OSError, smtplib.SMTPException)


def channel_metrics(channel: str) -> tuple[Metric, ...]:
    """A channel's counters (exported by /metrics as ``flights_{channel}_...``)."""
    what = {"webhook": "the webhook", "email": "e-mail"}.get(channel, channel)
    return (
        Metric("offered", f"flights_{channel}_offered", f"Alerts offered to {what}"),
        Metric("sent", f"flights_{channel}_sent", f"Alerts {what} accepted"),
        Metric("failed", f"flights_{channel}_failed", f"Alerts refused by {what} or dropped after every attempt"),
        Metric("rate_limited", f"flights_{channel}_rate_limited",
               f"Alerts not sent to {what}: the aircraft had one within a minute"),
        Metric("dropped_queue_full", f"flights_{channel}_dropped_queue_full",
               f"Alerts dropped: the queue of {what} was full"),
        Metric("retries", f"flights_{channel}_retries", f"Deliveries to {what} tried again"),
    )


@dataclass
class AlertChannel:
    """One way alerts reach people: ``deliver(alert)`` sends one (raises ``Undeliverable`` or one of
    ``TRANSIENT``); the channel queues, rate-limits and retries around it."""

    name: str
    deliver: Callable[[dict], Awaitable[None]]
    min_interval_s: float = 60.0  # at most one alert per aircraft per this many seconds
    max_queue: int = 1000
    attempts: int = 4
    backoff_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    stats: StageMetrics = field(init=False)

    def __post_init__(self):
        self.stats = StageMetrics(channel_metrics(self.name))
        self._queue: asyncio.Queue = asyncio.Queue(self.max_queue)
        self._last_sent: dict[str, float] = {}

    def offer(self, icao24: str, alert: dict) -> bool:
        """Queue an alert if its aircraft is not rate-limited and the queue has room; never waits."""
        self.stats.inc("offered")
        now = self.clock()
        last = self._last_sent.get(icao24)
        if last is not None and now - last < self.min_interval_s:
            self.stats.inc("rate_limited")
            return False
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.stats.inc("dropped_queue_full")
            return False
        self._last_sent[icao24] = now
        if len(self._last_sent) > 100_000:  # bounded memory: forget aircraft not seen for a while
            cutoff = now - self.min_interval_s
            self._last_sent = {k: v for k, v in self._last_sent.items() if v >= cutoff}
        return True

    async def run(self) -> None:
        """Deliver queued alerts one by one until cancelled."""
        while True:
            alert = await self._queue.get()
            for attempt in range(self.attempts):
                try:
                    await self.deliver(alert)
                except Undeliverable as refused:
                    log.warning("Alert refused by %s: %s", self.name, refused)
                    self.stats.inc("failed")
                    break
                except TRANSIENT as error:
                    if attempt + 1 < self.attempts:
                        self.stats.inc("retries")
                        await asyncio.sleep(self.backoff_s * 2**attempt)
                    else:
                        self.stats.inc("failed")
                        log.warning("Alert to %s dropped after %d attempts (%s)", self.name, self.attempts,
                                    type(error).__name__)
                else:
                    self.stats.inc("sent")
                    break


def _when(alert: dict) -> str:
    return datetime.fromtimestamp(alert["event_time"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def aircraft(alert: dict) -> str:
    """The aircraft: its icao24 and, when it sent one, its callsign."""
    return alert["icao24"] + (f" {alert['callsign'].strip()}" if (alert.get("callsign") or "").strip() else "")


def headline(alert: dict) -> str:
    """One line saying which aircraft, where and when."""
    return f"{aircraft(alert)} at {alert['latitude']:.4f}, {alert['longitude']:.4f} ({_when(alert)})"


def details(alert: dict) -> str:
    reasons = "; ".join(alert.get("reasons") or ()) or "no reason given"
    squawk = f", squawk {alert['squawk']}" if alert.get("squawk") else ""
    return f"{reasons} (score {alert['ml_anomaly_score']:.2f}{squawk})"


def slack_message(alert: dict) -> dict:
    """Slack's incoming-webhook body: a text for notifications and one section block."""
    text = f"flights-app alert: {headline(alert)}: {details(alert)}"
    block = f"*flights-app alert* `{alert['icao24']}`\n{headline(alert)}\n{details(alert)}"
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": block}}]}


def email_message(alert: dict, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"flights-app alert: {aircraft(alert)}"  # short: a long one is folded badly
    message["From"], message["To"] = sender, ", ".join(recipients)
    message.set_content(f"{headline(alert)}\n{details(alert)}\n\nThe whole alert:\n"
                        + "\n".join(f"  {k}: {v}" for k, v in alert.items()) + "\n")
    return message


class WebhookDelivery:
    """POSTs each alert to ``url``: as it is (``json``) or as Slack's message (``slack``)."""

    def __init__(self, url: str, form: str = "json", timeout_s: float = 10.0):
        self.url, self.form = url, form
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, alert: dict) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = slack_message(alert) if self.form == "slack" else alert
        async with self._session.post(self.url, json=body, timeout=self.timeout) as response:
            if response.status >= 500 or response.status == 429:
                raise TryAgain(f"HTTP {response.status}")
            if response.status >= 400:
                raise Undeliverable(f"HTTP {response.status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class MailDelivery:
    """Sends each alert as one e-mail (smtplib on a thread of its own: the event loop never waits on it)."""

    def __init__(self, mail: AlertMail, timeout_s: float = 30.0):
        self.mail, self.timeout_s = mail, timeout_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alert-mail")

    async def __call__(self, alert: dict) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._send, alert)

    def _send(self, alert: dict) -> None:
        mail = self.mail
        context = ssl.create_default_context(cafile=str(mail.ca_file) if mail.ca_file else None)
        if mail.security == "tls":
            client = smtplib.SMTP_SSL(mail.host, mail.port, timeout=self.timeout_s, context=context)
        else:
            client = smtplib.SMTP(mail.host, mail.port, timeout=self.timeout_s)
        try:
            with client:
                if mail.security == "starttls":
                    client.starttls(context=context)
                if mail.user:
                    client.login(mail.user, mail.password or "")
                client.send_message(email_message(alert, mail.sender, mail.recipients))
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused,
                smtplib.SMTPNotSupportedError) as refused:
            raise Undeliverable(f"{type(refused).__name__} from {mail.host}:{mail.port}") from None


def alert_channels(settings) -> list[AlertChannel]:
    """The channels the settings ask for (none, the webhook, e-mail, or both)."""
    channels = []
    if settings.alert_webhook:
        channels.append(AlertChannel("webhook", WebhookDelivery(settings.alert_webhook, settings.alert_format)))
    if settings.alert_mail is not None:
        channels.append(AlertChannel("email", MailDelivery(settings.alert_mail)))
    return channels
