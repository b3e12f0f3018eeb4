"""Alerts to people (flights_app/notify.py): a real HTTP receiver gets the webhook's JSON and Slack
messages, a real SMTP server (aiosmtpd, STARTTLS required, a login) gets the e-mails; retries,
per-aircraft rate limit, a full queue that never blocks, refusals counted without retrying."""

from __future__ import annotations

import asyncio
import logging
import ssl
from email import message_from_bytes, policy

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from flights_app.dev_secrets import tls_pair
from flights_app.notify import AlertChannel, WebhookDelivery, alert_channels
from flights_app.settings import SettingsError, load_settings
from tests.harness import async_wait_until, free_port

ALERT = {"icao24": "3c6444", "callsign": "DLH4AB  ", "event_time": 1765000805, "last_contact": 1765000806,
         "latitude": 48.9, "longitude": 2.4, "reasons": ["emergency squawk 7700"], "ml_anomaly_score": 0.93,
         "squawk": "7700"}


async def _receiver(answers: list[int], received: list[dict]) -> TestServer:
    """An HTTP receiver answering each POST with the next of ``answers`` (then 204), keeping what it accepted."""
    async def hook(request):
        status = answers.pop(0) if answers else 204
        if status < 300:
            received.append(await request.json())
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def test_alerts_are_retried_rate_limited_per_aircraft_and_never_block():
    received = []

    async def scenario():
        server = await _receiver([503, 503], received)  # the first alert survives two 503s
        now = [0.0]
        channel = AlertChannel("webhook", WebhookDelivery(str(server.make_url("/hook"))), min_interval_s=60,
                               max_queue=3, backoff_s=0.01, clock=lambda: now[0])
        sender = asyncio.create_task(channel.run())
        assert channel.offer("aaaaaa", {"icao24": "aaaaaa", "n": 1})
        assert not channel.offer("aaaaaa", {"icao24": "aaaaaa", "n": 2})  # within a minute: limited
        now[0] = 61.0
        assert channel.offer("aaaaaa", {"icao24": "aaaaaa", "n": 3})
        assert channel.offer("bbbbbb", {"icao24": "bbbbbb", "n": 4})
        offered_full = [channel.offer(f"c{i:05d}", {"n": 10 + i}) for i in range(10)]  # a queue of 3
        await async_wait_until(lambda: channel.stats.sent == 3 + offered_full.count(True), 10,
                               "every queued alert delivered")
        sender.cancel()
        await channel.deliver.close()
        await server.close()
        return channel, offered_full

    channel, offered_full = asyncio.run(scenario())
    assert [r["n"] for r in received][:3] == [1, 3, 4]
    assert channel.stats.retries == 2 and channel.stats.rate_limited == 1
    assert offered_full.count(False) == channel.stats.dropped_queue_full > 0  # dropped, not waited for
    assert channel.stats.sent == len(received) and channel.stats.failed == 0


def test_a_refusal_is_counted_at_once_and_slack_gets_its_message_format(tmp_path):
    received = []

    async def scenario():
        server = await _receiver([400], received)  # a 4xx is not tried again
        settings = load_settings({"FLIGHTS_DATADIR": str(tmp_path), "FLIGHTS_ALERT_FORMAT": "slack",
                                  "FLIGHTS_ALERT_WEBHOOK": str(server.make_url("/hook"))})
        [channel] = alert_channels(settings)
        channel.backoff_s = 0.01
        sender = asyncio.create_task(channel.run())
        channel.offer("aaaaaa", {**ALERT, "icao24": "aaaaaa"})
        channel.offer(ALERT["icao24"], ALERT)
        await async_wait_until(lambda: channel.stats.sent + channel.stats.failed == 2, 10, "both alerts settled")
        sender.cancel()
        await channel.deliver.close()
        await server.close()
        return channel

    channel = asyncio.run(scenario())
    assert (channel.stats.failed, channel.stats.sent, channel.stats.retries) == (1, 1, 0)
    [message] = received
    assert set(message) == {"text", "blocks"}  # Slack's incoming-webhook body, not the alert's fields
    assert message["text"].startswith("flights-app alert: 3c6444 DLH4AB at 48.9000, 2.4000 (2025-12-06 06:00:05 UTC)")
    assert "emergency squawk 7700 (score 0.93, squawk 7700)" in message["text"]
    assert message["blocks"][0]["text"]["type"] == "mrkdwn" and "`3c6444`" in message["blocks"][0]["text"]["text"]


class _Mailbox:
    """aiosmtpd's handler: keeps every message it accepted."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def smtp_server(tmp_path):
    """A real SMTP server on 127.0.0.1 that requires STARTTLS (its certificate signed by a CA of the
    test's own) and a login, user ``alerts``, password in ``password`` (the CA's PEM in ``ca``)."""
    ca_pem, key_and_chain = tls_pair(("localhost",))
    (tmp_path / "ca.pem").write_text(ca_pem)
    (tmp_path / "server.pem").write_text(key_and_chain)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.pem")
    password = "a long smtp password"
    (tmp_path / "smtp-password").write_text(password + "\n")

    def authenticate(server, session, envelope, mechanism, auth_data):
        # handled=False: aiosmtpd answers (235 or 535); its default, True, leaves the answer to the hook
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"alerts", password.encode()),
                          handled=False)

    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), tls_context=context,
                            require_starttls=True, auth_required=True, authenticator=authenticate)
    controller.start()
    try:
        yield {"mailbox": mailbox, "port": controller.port, "ca": tmp_path / "ca.pem", "password": password,
               "password_file": tmp_path / "smtp-password"}
    finally:
        controller.stop()


def _mail_settings(tmp_path, smtp_server, **extra):
    return load_settings({"FLIGHTS_DATADIR": str(tmp_path), "FLIGHTS_ALERT_SMTP_HOST": "127.0.0.1",
                          "FLIGHTS_ALERT_SMTP_PORT": str(smtp_server["port"]),
                          "FLIGHTS_ALERT_SMTP_USER": "alerts",
                          "FLIGHTS_ALERT_SMTP_PASSWORD_FILE": str(smtp_server["password_file"]),
                          "FLIGHTS_ALERT_SMTP_CA_FILE": str(smtp_server["ca"]),
                          "FLIGHTS_ALERT_SMTP_FROM": "flights@example.org",
                          "FLIGHTS_ALERT_SMTP_TO": "ops@example.org, duty@example.org", **extra})


def _mail(settings, alerts) -> AlertChannel:
    async def scenario():
        [channel] = alert_channels(settings)
        channel.backoff_s = 0.01
        sender = asyncio.create_task(channel.run())
        for alert in alerts:
            channel.offer(alert["icao24"], alert)
        await async_wait_until(lambda: channel.stats.sent + channel.stats.failed == len(alerts), 30,
                               "every alert mailed or refused")
        sender.cancel()
        return channel
    return asyncio.run(scenario())


def test_alerts_are_mailed_over_starttls_with_a_login(tmp_path, smtp_server, caplog):
    settings = _mail_settings(tmp_path, smtp_server)
    assert smtp_server["password"] not in repr(settings)
    with caplog.at_level(logging.DEBUG):
        channel = _mail(settings, [ALERT, {**ALERT, "icao24": "abcdef", "callsign": None}])
    assert (channel.stats.sent, channel.stats.failed) == (2, 0)
    [(recipients, first), (_, second)] = smtp_server["mailbox"].messages
    assert recipients == ["ops@example.org", "duty@example.org"] and first["From"] == "flights@example.org"
    assert first["Subject"] == "flights-app alert: 3c6444 DLH4AB" and second["Subject"] == "flights-app alert: abcdef"
    body = first.get_content().replace("\r\n", "\n")
    assert body.startswith("3c6444 DLH4AB at 48.9000, 2.4000 (2025-12-06 06:00:05 UTC)\n"
                           "emergency squawk 7700 (score 0.93, squawk 7700)\n")
    assert smtp_server["password"] not in caplog.text


def test_a_wrong_smtp_password_is_refused_once_without_retrying_or_showing_it(tmp_path, smtp_server, caplog):
    smtp_server["password_file"].write_text("not the password")
    with caplog.at_level(logging.WARNING, logger="flights_app.notify"):
        channel = _mail(_mail_settings(tmp_path, smtp_server), [ALERT])
    assert (channel.stats.sent, channel.stats.failed, channel.stats.retries) == (0, 1, 0)
    assert "SMTPAuthenticationError" in caplog.text and "not the password" not in caplog.text
    assert smtp_server["mailbox"].messages == []


@pytest.mark.parametrize("environ, said", [
    ({"FLIGHTS_ALERT_SMTP_TO": "ops@example.org"}, "FLIGHTS_ALERT_SMTP_TO is set but FLIGHTS_ALERT_SMTP_HOST"),
    ({"FLIGHTS_ALERT_SMTP_HOST": "smtp.example.org"}, "needs FLIGHTS_ALERT_SMTP_FROM and FLIGHTS_ALERT_SMTP_TO"),
    ({"FLIGHTS_ALERT_SMTP_HOST": "smtp.example.org", "FLIGHTS_ALERT_SMTP_FROM": "a@b.org",
      "FLIGHTS_ALERT_SMTP_TO": "ops"}, "'ops' is not an e-mail address"),
    ({"FLIGHTS_ALERT_SMTP_HOST": "smtp.example.org", "FLIGHTS_ALERT_SMTP_FROM": "a@b.org,c@d.org",
      "FLIGHTS_ALERT_SMTP_TO": "ops@b.org"}, "FLIGHTS_ALERT_SMTP_FROM: expected one address"),
    ({"FLIGHTS_ALERT_SMTP_HOST": "smtp.example.org", "FLIGHTS_ALERT_SMTP_FROM": "a@b.org",
      "FLIGHTS_ALERT_SMTP_TO": "ops@b.org", "FLIGHTS_ALERT_SMTP_USER": "u"}, "go together"),
    ({"FLIGHTS_ALERT_SMTP_HOST": "smtp.example.org", "FLIGHTS_ALERT_SMTP_FROM": "a@b.org",
      "FLIGHTS_ALERT_SMTP_TO": "ops@b.org", "FLIGHTS_ALERT_SMTP_USER": "u", "FLIGHTS_ALERT_SMTP_SECURITY": "none",
      "FLIGHTS_ALERT_SMTP_PASSWORD_FILE": "PASSWORD"}, "in clear"),
    ({"FLIGHTS_ALERT_SMTP_SECURITY": "ssl"}, "expected one of starttls, tls, none"),
    ({"FLIGHTS_ALERT_FORMAT": "teams"}, "expected one of json, slack"),
])
def test_bad_alert_settings_are_refused_in_one_line(tmp_path, environ, said):
    (tmp_path / "password").write_text("secret words")
    environ = {k: str(tmp_path / "password") if v == "PASSWORD" else v for k, v in environ.items()}
    with pytest.raises(SettingsError, match=said) as refused:
        load_settings({"FLIGHTS_DATADIR": str(tmp_path), **environ})
    assert "secret words" not in str(refused.value)
