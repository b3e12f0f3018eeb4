"""Every server listens on 127.0.0.1 only, and no secret reaches a log, an error or a web response."""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from pathlib import Path

import pytest

from flights_app.topic_names import RAW
from tests.harness import FakeOpenSky, TestApp, http_get, read_states, wait_until
from tests.test_dashboard_browser import Dashboard

pytestmark = pytest.mark.kafka


def _family(pid: int) -> set[int]:
    """``pid`` and its descendants."""
    pids, todo = set(), [pid]
    while todo:
        p = todo.pop()
        pids.add(p)
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            children = []
        todo += [int(c) for c in children]
    return pids


def _socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            match = re.match(r"socket:\[(\d+)\]", target)
            if match:
                inodes.add(match.group(1))
    return inodes


def _address(hex_address: str) -> str:
    if len(hex_address) == 8:  # IPv4, little-endian
        return ".".join(str(int(hex_address[i:i + 2], 16)) for i in (6, 4, 2, 0))
    words = [hex_address[i:i + 8] for i in range(0, 32, 8)]  # IPv6: four little-endian words
    raw = "".join("".join(w[j:j + 2] for j in (6, 4, 2, 0)) for w in words)
    return ":".join(raw[i:i + 4] for i in range(0, 32, 4))


def listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by ``pid`` or its children."""
    inodes = _socket_inodes(_family(pid))
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                out.append((_address(address), int(port, 16)))
    return out


#: 127.0.0.1, ::1, and 127.0.0.1 as Java's IPv6 sockets show it (::ffff:127.0.0.1).
LOOPBACK = {"127.0.0.1", "0000:0000:0000:0000:0000:0000:0000:0001", "0000:0000:0000:0000:0000:FFFF:7F00:0001"}


def test_every_server_listens_on_loopback_and_no_secret_gets_out(kafka, tmp_path, cleanup):
    secret = "s3cr3t-" + "z" * 24
    fake = FakeOpenSky(tmp_path, "--simulate", "20", "--client-id", "me", "--client-secret", secret,
                       "--require-auth", "--token-ttl", "3")
    cleanup.append(fake)
    web_token, password = "w3b-" + "q" * 24, "p4ss-" + "r" * 16
    (tmp_path / "web-token").write_text(web_token)
    (tmp_path / "users.json").write_text(json.dumps({"ops": password}))
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL=fake.api_url, OPENSKY_TOKEN_URL=fake.token_url,
                  OPENSKY_CLIENT_ID="me", OPENSKY_CLIENT_SECRET=secret, FLIGHTS_POLL_INTERVAL="0.5",
                  FLIGHTS_LOG_LEVEL="debug", FLIGHTS_WEB_TOKEN_FILE=str(tmp_path / "web-token"),
                  FLIGHTS_DASHBOARD_AUTH_FILE=str(tmp_path / "users.json"))
    cleanup.append(app)
    worker = app.start_worker()
    dashboard = Dashboard(app, tmp_path, worker.web_port)
    cleanup.append(dashboard)
    base = f"http://127.0.0.1:{worker.web_port}"
    wait_until(lambda: app.check_workers() or len(read_states(app.bootstrap, app.topic(RAW))) >= 40, 120,
               "authenticated states", 0.5)
    wait_until(lambda: fake.stats()["token_requests"] >= 2, 30, "a token refresh")
    wait_until(lambda: dashboard.alive() and http_get(dashboard.url)[0] == 200, 60, "the dashboard")

    servers = {"embedded Kafka": kafka.process.pid, "worker": worker.process.pid,
               "dashboard": dashboard.process.pid, "fake OpenSky": fake.process.pid}
    for name, pid in servers.items():
        sockets = listening(pid)
        assert sockets, f"{name} listens nowhere?"
        assert {address for address, _ in sockets} <= LOOPBACK, (name, sockets)

    # Everything a user or an operator can see: web answers, then every log line of the run.
    seen = []
    for path in ("/health", "/metrics", "/source/", "/model/", "/stats/windows/", "/stats/rejected/",
                 "/stats/countries/", "/table/", "/nope", "/aircraft/zzz/"):
        seen.append(str(http_get(base + path)[2]))
    seen.append(str(http_get(dashboard.url)[2]))
    tokens = fake.stats()["tokens_issued"]
    assert len(tokens) >= 2
    for proc in (worker, dashboard, fake):
        proc.stop()
        seen.append(proc.log_text())
    everything = "\n".join(seen)
    for needle in (secret, urllib.parse.quote(secret), *tokens, web_token, password):
        assert needle not in everything, "a secret or a token got out"
