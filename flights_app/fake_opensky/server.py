"""An OpenSky-compatible HTTP server: ``/api/states/all``, the OAuth2 token
endpoint and rate-limit headers, fed by a recording or the simulator.

Out-of-band endpoints for tests and evaluation live under ``/_fake/``: the
anomaly labels, what was served, fault injection, pause. The source agent
never calls them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from flights_app.fake_opensky.faults import FaultError, FaultPlan, parse_fault
from flights_app.fake_opensky.recordings import RecordedPoll
from flights_app.fake_opensky.simulator import AnomalyLabel, Simulator
from flights_app.settings import OPENSKY_TOKEN_PATH, BoundingBox, credit_cost

log = logging.getLogger("flights_app.fake_opensky")

STATES_PATH = "/api/states/all"
BIG_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_SLOW_S = 30.0
DEFAULT_RETRY_AFTER_S = 5.0


class ReplaySource:
    """Recorded polls, served in order.

    ``pace="clock"``: the poll shown moves on at the recorded cadence times
    ``speed``, from the first request on (a client that starts late misses no
    poll). ``pace="request"``: each request gets the next poll (exact and
    fast, for tests). After the last poll: ``states: null`` unless ``loop``.
    ``shift_to_present`` moves every timestamp so the first poll is "now".
    """

    def __init__(self, polls: list[RecordedPoll], *, pace: str = "clock", speed: float = 1.0,
                 loop: bool = False, shift_to_present: bool = False, clock=time.time):
        if pace not in ("clock", "request"):
            raise ValueError("pace must be 'clock' or 'request'")
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.polls = polls
        self.pace, self.speed, self.loop = pace, speed, loop
        self.clock = clock
        self.started = clock()
        first, last = polls[0].time, polls[-1].time
        self.span_s = max(1, last - first)
        self.cadence_s = self.span_s / (len(polls) - 1) if len(polls) > 1 else 1.0
        self.offset = int(self.started) - first if shift_to_present else 0
        self.served = 0
        self.last_served: tuple[int, int] | None = None  # (loop, poll index) of the last poll served
        # OpenSky's `time` parameter: a recording's times are not always in order (its answers came from
        # several servers), so the snapshots are looked up by time, the later poll of equal times winning.
        self._by_time = sorted((p.time, i) for i, p in enumerate(polls))
        self._times = [t for t, _ in self._by_time]
        self.exhausted = False
        self.states_served = 0
        self.first_served_at: float | None = None
        self.first_asked_at: float | None = None  # the clock pace counts from the first request

    def progress(self) -> dict:
        """How far the replay has got: polls in the recording, the last one served (1-based, 0 before
        the first), in which pass over the recording (1-based), the states served and the seconds since
        the first poll was, and the seconds the pass still takes (None until it can be told)."""
        cycle, index = self.last_served if self.last_served is not None else (0, -1)
        n = len(self.polls)
        elapsed = 0.0 if self.first_served_at is None else self.clock() - self.first_served_at
        left = n - (index + 1)
        if self.exhausted or left == 0:
            time_left = 0.0
        elif self.pace == "clock":
            time_left = left * self.cadence_s / self.speed
        else:  # as fast as polls come: at the pace they have come so far
            done = cycle * n + index + 1
            time_left = left * elapsed / done if done and elapsed > 0 else None
        return {"polls": n, "served": index + 1, "loop": cycle + 1, "finished": self.exhausted,
                "states": self.states_served, "elapsed_s": round(elapsed, 3),
                "time_left_s": None if time_left is None else round(time_left, 1)}

    def _index_now(self) -> int:
        if self.pace == "request":
            index = self.served
        else:
            if self.first_asked_at is None:
                self.first_asked_at = self.clock()
            index = int((self.clock() - self.first_asked_at) * self.speed / self.cadence_s)
        self.served += 1
        return index

    def response(self, at_time: int | None) -> tuple[int, list | None]:
        if at_time is not None:  # OpenSky's `time` parameter: the newest snapshot at or before it
            i = bisect_right(self._times, at_time - self.offset) - 1
            poll = self.polls[self._by_time[max(0, i)][1]]
            return self._shift(poll, 0)
        index = self._index_now()
        n = len(self.polls)
        if index >= n and not self.loop:
            self.exhausted = True
            return self.polls[-1].time + self.offset, None
        cycle, index = divmod(index, n)
        self.last_served = (cycle, index)
        self.states_served += len(self.polls[index].states or ())
        if self.first_served_at is None:
            self.first_served_at = self.clock()
        # Each loop moves time on by the recording's span, so times keep increasing.
        return self._shift(self.polls[index], cycle * (self.span_s + int(self.cadence_s)))

    def _shift(self, poll: RecordedPoll, extra: int) -> tuple[int, list | None]:
        delta = self.offset + extra
        if poll.states is None or delta == 0:
            return poll.time + delta, poll.states
        shifted = []
        for row in poll.states:
            row = list(row)
            for i in (3, 4):  # time_position, last_contact
                if isinstance(row[i], int) and not isinstance(row[i], bool):
                    row[i] += delta
            shifted.append(row)
        return poll.time + delta, shifted


class SimulatedSource:
    def __init__(self, simulator: Simulator, clock=time.time):
        self.simulator = simulator
        self.clock = clock
        self.exhausted = False

    def response(self, at_time: int | None, extended: bool = False) -> tuple[int, list, list[AnomalyLabel]]:
        t = int(self.clock()) if at_time is None else at_time
        rows, labels = self.simulator.states_at(t, extended=extended)
        return t, rows, labels


@dataclass
class FakeState:
    source: ReplaySource | SimulatedSource
    client_id: str | None = None
    client_secret: str | None = None
    require_auth: bool = False
    token_ttl_s: float = 1800.0
    credits: int = 0  # 0 = unlimited (no rate-limit headers)
    credit_reset_s: float = 60.0
    faults: FaultPlan = field(default_factory=FaultPlan)
    labels_out: Path | None = None
    tokens: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)  # (icao24, last_contact) -> kind
    requests: list = field(default_factory=list)
    token_requests: int = 0
    states_served: int = 0
    paused: bool = False
    credits_used: int = 0
    credits_reset_at: float = 0.0


FAKE = web.AppKey("fake", FakeState)


def _bbox(query) -> BoundingBox | None:
    keys = ("lamin", "lomin", "lamax", "lomax")
    if not any(k in query for k in keys):
        return None
    try:
        return BoundingBox(*(float(query[k]) for k in keys))
    except (KeyError, ValueError):
        raise web.HTTPBadRequest(text="lamin, lomin, lamax and lomax must all be numbers") from None


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else None


async def states_all(request: web.Request) -> web.StreamResponse:
    state: FakeState = request.app[FAKE]
    now = time.time()
    record = {"at": now, "status": 200, "states": 0, "fault": None}
    state.requests.append(record)

    token = _bearer(request)
    authenticated = False
    if token is not None:
        expires = state.tokens.get(token)
        if expires is None or expires < now:
            record["status"] = 401
            return web.json_response({"error": "invalid or expired token"}, status=401)
        authenticated = True
    elif state.require_auth:
        record["status"] = 401
        return web.json_response({"error": "authentication required"}, status=401)

    bbox = _bbox(request.query)
    headers = {}
    if state.credits:
        if now >= state.credits_reset_at:
            state.credits_used, state.credits_reset_at = 0, now + state.credit_reset_s
        cost = credit_cost(bbox)
        if state.credits_used + cost > state.credits:
            record["status"] = 429
            wait = max(1, int(state.credits_reset_at - now + 0.999))
            return web.json_response({"error": "rate limited"}, status=429, headers={
                "X-Rate-Limit-Retry-After-Seconds": str(wait)})
        state.credits_used += cost
        headers["X-Rate-Limit-Remaining"] = str(state.credits - state.credits_used)

    fault, arg = state.faults.next_fault() or (None, None)
    record["fault"] = fault
    if fault in ("429", "500", "502", "503"):
        record["status"] = int(fault)
        if fault == "429":
            headers["X-Rate-Limit-Retry-After-Seconds"] = str(int(arg if arg is not None else DEFAULT_RETRY_AFTER_S))
        return web.json_response({"error": f"injected {fault}"}, status=int(fault), headers=headers)
    if fault == "slow":
        await asyncio.sleep(arg if arg is not None else DEFAULT_SLOW_S)
    if fault == "disconnect":
        request.transport.close()
        raise asyncio.CancelledError()

    at_time = None
    if "time" in request.query and authenticated:  # OpenSky ignores `time` for anonymous calls
        try:
            at_time = int(request.query["time"])
        except ValueError:
            raise web.HTTPBadRequest(text="time must be a Unix timestamp") from None
    extended = request.query.get("extended") == "1"

    labels: list[AnomalyLabel] = []
    if state.paused:
        t, rows = int(now), None
    elif isinstance(state.source, SimulatedSource):
        t, rows, labels = state.source.response(at_time, extended)
    else:
        t, rows = state.source.response(at_time)
    if rows is not None:
        if bbox is not None:
            rows = [r for r in rows if _in_box(bbox, r)]
            kept = {(r[0], r[4]) for r in rows}
            labels = [lb for lb in labels if (lb.icao24, lb.last_contact) in kept]
        rows = state.faults.corrupt_rows(rows)
        if fault == "duplicate":
            rows = [r for row in rows for r in (row, row)]
        elif fault in ("future", "past"):
            delta = 7200 if fault == "future" else -7200 * 24
            rows = [r[:3] + [None if r[3] is None else r[3] + delta, r[4] + delta] + r[5:] for r in rows]
    _record_labels(state, labels)
    record["states"] = 0 if rows is None else len(rows)
    state.states_served += record["states"]

    document = {"time": t, "states": rows}
    if fault == "empty":
        document["states"] = None
        state.states_served -= record["states"]
        record["states"] = 0
    body = json.dumps(document, separators=(",", ":"))
    if fault == "malformed":
        body = body.replace('"states":', "states=", 1)
    elif fault == "truncated":
        body = body[: max(1, len(body) // 2)]
    elif fault == "big":
        body = body[:-1] + ',"padding":"' + "x" * BIG_BODY_BYTES + '"}'
    return web.Response(text=body, content_type="application/json", headers=headers)


def _in_box(bbox: BoundingBox, row: list) -> bool:
    lat, lon = row[6], row[5]
    return isinstance(lat, (int, float)) and isinstance(lon, (int, float)) and bbox.contains(lat, lon)


def _record_labels(state: FakeState, labels: list[AnomalyLabel]) -> None:
    fresh = [lb for lb in labels if (lb.icao24, lb.last_contact) not in state.labels]
    for label in fresh:
        state.labels[(label.icao24, label.last_contact)] = label.kind
    if fresh and state.labels_out is not None:
        with open(state.labels_out, "a") as out:
            out.writelines(json.dumps(lb.as_dict()) + "\n" for lb in fresh)


async def token(request: web.Request) -> web.Response:
    state: FakeState = request.app[FAKE]
    state.token_requests += 1
    fault = state.faults.token_queue.popleft() if state.faults.token_queue else None
    if fault is not None:
        return web.json_response({"error": f"injected {fault}"}, status=int(fault))
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    expected = (state.client_id, state.client_secret)
    if not client_id or not client_secret or (state.client_id is not None and (client_id, client_secret) != expected):
        return web.json_response({"error": "invalid_client"}, status=401)
    access_token = secrets.token_urlsafe(32)
    state.tokens[access_token] = time.time() + state.token_ttl_s
    return web.json_response({"access_token": access_token, "expires_in": state.token_ttl_s,
                              "token_type": "Bearer"})


async def labels(request: web.Request) -> web.Response:
    state: FakeState = request.app[FAKE]
    return web.json_response([{"icao24": k[0], "last_contact": k[1], "kind": v} for k, v in state.labels.items()])


async def stats(request: web.Request) -> web.Response:
    state: FakeState = request.app[FAKE]
    return web.json_response({
        "requests": len(state.requests), "states_served": state.states_served,
        "token_requests": state.token_requests,
        "tokens_issued": list(state.tokens),  # a test searches logs for them; this server is a fake
        "exhausted": state.source.exhausted,
        "paused": state.paused, "log": state.requests[-1000:],
        "corruptions": state.faults.corruptions,
        **({"replay": state.source.progress()} if isinstance(state.source, ReplaySource) else {}),
    })


async def control(request: web.Request) -> web.Response:
    """``{"faults": ["503", "429:2"], "token_faults": ["503"], "corrupt_rate": 0.1, "paused": true,
    "expire_tokens": true}``"""
    state: FakeState = request.app[FAKE]
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    try:
        if "faults" in body:
            state.faults.enqueue(list(body["faults"]))
        if "token_faults" in body:
            state.faults.token_queue.extend(str(int(code)) for code in body["token_faults"])
        if "corrupt_rate" in body:
            rate = float(body["corrupt_rate"])
            if not 0 <= rate <= 1:
                raise FaultError("corrupt_rate must be within 0..1")
            state.faults.corrupt_rate = rate
    except (FaultError, TypeError, ValueError) as error:
        raise web.HTTPBadRequest(text=str(error)) from None
    if "paused" in body:
        state.paused = bool(body["paused"])
    if body.get("expire_tokens"):
        state.tokens = {k: 0.0 for k in state.tokens}
    return web.json_response({"ok": True, "queued_faults": len(state.faults.queue), "paused": state.paused})


def make_app(state: FakeState) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[FAKE] = state
    app.router.add_get(STATES_PATH, states_all)
    app.router.add_post(OPENSKY_TOKEN_PATH, token)
    app.router.add_get("/_fake/labels", labels)
    app.router.add_get("/_fake/stats", stats)
    app.router.add_post("/_fake/control", control)
    return app


def initial_faults(specs: list[str], corrupt_rate: float) -> FaultPlan:
    plan = FaultPlan(corrupt_rate=corrupt_rate)
    for spec in specs:
        plan.queue.append(parse_fault(spec))
    return plan
