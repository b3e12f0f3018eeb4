"""The source, its backoff, tokens and HTTP client, against the fake server in-process
(real HTTP on loopback) and a controllable clock: no real waiting."""

import asyncio
import random
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from flights_app.fake_opensky.faults import FaultPlan
from flights_app.fake_opensky.recordings import RecordedPoll
from flights_app.fake_opensky.server import FakeState, ReplaySource, make_app
from flights_app.opensky.auth import REFRESH_MARGIN_S, AuthError, TokenProvider
from flights_app.opensky.backoff import Backoff
from flights_app.opensky.client import OpenSkyClient, PollResult
from flights_app.opensky.parse import StatesResponse
from flights_app.settings import OPENSKY_TOKEN_PATH, Secret
from flights_app.source import StateSource
from tests.test_validation import AIRBORNE, T


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_backoff_grows_exponentially_up_to_the_cap():
    clock = Clock()
    backoff = Backoff(base_s=1.0, max_s=30.0, clock=clock, rng=random.Random(1))
    waits = [backoff.failure() for _ in range(12)]
    assert all(1.0 <= w <= 30.0 for w in waits)
    assert max(waits[6:]) > 8.0  # it did grow
    assert not backoff.ready()
    clock.now += backoff.seconds_left()
    assert backoff.ready()
    backoff.success()
    assert backoff.failures == 0 and backoff.ready()


def test_backoff_never_goes_out_before_the_servers_retry_after():
    clock = Clock()
    backoff = Backoff(base_s=1.0, max_s=30.0, clock=clock)
    assert backoff.failure(retry_after_s=120.0) == 120.0  # longer than the cap: the server wins
    clock.now += 119.9
    assert not backoff.ready()
    clock.now += 0.1
    assert backoff.ready()


def rows_response(*rows, time_=T):
    return PollResult(response=StatesResponse(time_, list(rows)), credits_remaining=99)


def make_source(results, clock, interval_s=5.0):
    published = []
    results = list(results)

    async def fetch():
        return results.pop(0)

    async def publish(valid, invalid, poll_time):
        published.append((list(valid), list(invalid)))

    backoff = Backoff(base_s=interval_s, max_s=60.0, clock=clock, rng=random.Random(3))
    return StateSource(fetch, publish, backoff, interval_s=interval_s, wall_clock=lambda: 5.0), published


def test_a_poll_splits_valid_and_invalid_and_counts_both():
    clock = Clock()
    bad = list(AIRBORNE)
    bad[6] = None
    source, published = make_source([rows_response(AIRBORNE, bad, "junk")], clock)
    asyncio.run(source.tick())
    (valid, invalid), = published
    assert [s.icao24 for s in valid] == ["a65527"]
    assert sorted(r.reason for r in invalid) == ["malformed_row", "missing_latitude"]
    stats = source.stats.as_dict()
    assert (stats["polls"], stats["states_received"], stats["valid"], stats["invalid"]) == (1, 3, 1, 2)
    assert stats["invalid_by_reason"] == {"missing_latitude": 1, "malformed_row": 1}
    assert stats["credits_remaining"] == 99


def test_ticks_poll_once_per_interval_and_back_off_after_failures():
    clock = Clock()
    failure = PollResult(failure="http_503", detail="down")
    source, published = make_source([failure, failure, rows_response(AIRBORNE)], clock, interval_s=5.0)
    asyncio.run(source.tick())
    assert source.stats.polls == 1 and source.stats.failures["http_503"] == 1
    wait = source.backoff.seconds_left()
    assert wait >= 5.0
    for _ in range(10):  # heartbeats before the backoff ends do nothing
        clock.now += wait / 11
        asyncio.run(source.tick())
    assert source.stats.polls == 1
    clock.now += wait  # past the backoff
    asyncio.run(source.tick())
    assert source.stats.polls == 2 and source.stats.consecutive_failures == 2
    clock.now += source.backoff.seconds_left() + 0.01
    asyncio.run(source.tick())
    assert source.stats.polls == 3 and source.stats.polls_ok == 1 and source.stats.consecutive_failures == 0
    asyncio.run(source.tick())  # not due yet: the interval has not passed
    assert source.stats.polls == 3


def recorded(n):
    return [RecordedPoll(f"p{i}", T + i, [[*AIRBORNE[:3], T + i, T + i, *AIRBORNE[5:]]]) for i in range(n)]


async def with_fake(state: FakeState, body):
    server = TestServer(make_app(state), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            return await body(session, str(server.make_url("")).rstrip("/"))
    finally:
        await server.close()


def fake_state(**kw):
    return FakeState(source=ReplaySource(recorded(50), pace="request"), **kw)


def test_client_reports_each_fault_as_a_reason_never_an_exception():
    state = fake_state(faults=FaultPlan())
    state.faults.enqueue(["429:7", "500", "502", "503", "malformed", "truncated", "big", "empty", "slow:2",
                          "duplicate"])

    async def body(session, base):
        client = OpenSkyClient(session, base + "/api", timeout_s=1.0)
        return [await client.fetch_states() for _ in range(11)]

    results = asyncio.run(with_fake(state, body))
    assert [r.failure for r in results[:6]] == ["http_429", "http_500", "http_502", "http_503",
                                                "malformed_json", "truncated_body"]
    assert results[0].retry_after_s == 7.0
    assert results[6].ok and len(results[6].response.rows) == 1  # 10 MB body, still parsed
    assert results[7].ok and results[7].response.rows == []  # states: null
    assert results[8].failure == "timeout"
    assert results[9].ok and len(results[9].response.rows) == 2  # duplicated states
    assert results[10].ok


def test_client_reports_connection_refused():
    async def body():
        async with aiohttp.ClientSession() as session:
            from tests.harness import free_port
            return await OpenSkyClient(session, f"http://127.0.0.1:{free_port()}/api").fetch_states()

    result = asyncio.run(body())
    assert result.failure == "connection"


def test_rate_limit_headers_and_429_once_credits_run_out():
    state = fake_state(credits=8, credit_reset_s=3600)  # a global poll costs 4

    async def body(session, base):
        client = OpenSkyClient(session, base + "/api")
        return [await client.fetch_states() for _ in range(3)]

    first, second, third = asyncio.run(with_fake(state, body))
    assert (first.credits_remaining, second.credits_remaining) == (4, 0)
    assert third.failure == "http_429" and third.retry_after_s > 3000


def test_tokens_are_cached_refreshed_before_expiry_and_after_a_401():
    state = fake_state(client_id="me", client_secret="s3cret-value", require_auth=True, token_ttl_s=600)
    clock = Clock(0.0)

    async def body(session, base):
        tokens = TokenProvider(session, base + OPENSKY_TOKEN_PATH, "me", Secret("s3cret-value"), clock=clock)
        client = OpenSkyClient(session, base + "/api", tokens=tokens)
        assert (await client.fetch_states()).ok
        assert (await client.fetch_states()).ok
        assert tokens.refreshes == 1  # cached
        clock.now = 600 - REFRESH_MARGIN_S + 1  # inside the refresh margin
        assert (await client.fetch_states()).ok
        assert tokens.refreshes == 2
        state.tokens = {k: 0.0 for k in state.tokens}  # the server expires it early
        refused = await client.fetch_states()
        assert refused.failure == "http_401"
        assert (await client.fetch_states()).ok
        return tokens.refreshes

    assert asyncio.run(with_fake(state, body)) == 3
    assert state.token_requests == 3


def test_wrong_credentials_are_a_permanent_error_that_never_shows_the_secret():
    state = fake_state(client_id="me", client_secret="right", require_auth=True)

    async def body(session, base):
        tokens = TokenProvider(session, base + OPENSKY_TOKEN_PATH, "me", Secret("wrong-secret-xyz"))
        with pytest.raises(AuthError) as error:
            await tokens.token()
        result = await OpenSkyClient(session, base + "/api", tokens=tokens).fetch_states()
        return error.value, result

    error, result = asyncio.run(with_fake(state, body))
    assert error.permanent and "check OPENSKY_CLIENT_ID" in str(error)
    assert result.failure == "auth" and result.permanent
    for text in (str(error), repr(error), result.detail, repr(result)):
        assert "wrong-secret-xyz" not in text


def test_token_endpoint_outage_is_temporary():
    state = fake_state(client_id="me", client_secret="right")
    state.faults.token_queue.extend(["503"])

    async def body(session, base):
        tokens = TokenProvider(session, base + OPENSKY_TOKEN_PATH, "me", Secret("right"))
        client = OpenSkyClient(session, base + "/api", tokens=tokens)
        return await client.fetch_states(), await client.fetch_states()

    first, second = asyncio.run(with_fake(state, body))
    assert first.failure == "auth" and not first.permanent
    assert second.ok


HEARTBEAT_S = 0.05  # the Faust timer's period in this test: the source is ticked this often


def test_source_waits_out_a_429_before_the_next_request():
    """End to end through HTTP: ticked every HEARTBEAT_S, no request goes out inside retry-after."""
    state = fake_state()
    state.faults.enqueue(["429:1"])

    async def body(session, base):
        client = OpenSkyClient(session, base + "/api")

        async def publish(valid, invalid, poll_time):
            pass

        source = StateSource(client.fetch_states, publish, Backoff(base_s=HEARTBEAT_S, max_s=5.0),
                             interval_s=HEARTBEAT_S)
        deadline = time.monotonic() + 10
        while source.stats.polls_ok < 2 and time.monotonic() < deadline:
            await source.tick()
            await asyncio.sleep(HEARTBEAT_S)  # the timer's period, not a wait for a result
        return source

    source = asyncio.run(with_fake(state, body))
    assert source.stats.failures["http_429"] == 1 and source.stats.polls_ok >= 2
    times = [r["at"] for r in state.requests]
    assert times[1] - times[0] >= 1.0


def test_the_client_asks_for_each_aircraft_s_category():
    from flights_app.fake_opensky.server import SimulatedSource
    from flights_app.fake_opensky.simulator import Simulator
    from flights_app.validation import validate_state

    state = FakeState(source=SimulatedSource(Simulator(5, seed=3, epoch=T)))

    async def body(session, base):
        return await OpenSkyClient(session, base + "/api").fetch_states()

    result = asyncio.run(with_fake(state, body))
    assert result.ok and result.response.rows and all(len(row) == 18 for row in result.response.rows)
    categories = {validate_state(row, result.response.time, ingest_time=T, poll_id="p").category
                  for row in result.response.rows}
    assert categories <= {3, 4, 6} and categories


def catching_up_source(last, now_time, can_ask_past=True, catch_up_max=60):
    """A source whose OpenSky is at ``now_time`` and answers any earlier time, after a leader that published
    up to ``last``: what it publishes (each poll's time), and what it asked for."""
    published, asked = [], []

    async def fetch(at_time=None):
        asked.append(at_time)
        t = now_time if at_time is None else at_time
        return rows_response([*AIRBORNE[:3], t, t, *AIRBORNE[5:]], time_=t)

    async def publish(valid, invalid, poll_time):
        published.append(poll_time)

    async def last_published():  # what Kafka holds: the newest poll published, by anyone
        return max(published, default=last)

    source = StateSource(fetch, publish, Backoff(base_s=5.0, max_s=60.0, clock=Clock()), interval_s=5.0,
                         wall_clock=lambda: float(now_time), last_published=last_published,
                         can_ask_past=can_ask_past, catch_up_max=catch_up_max)
    return source, published, asked


def test_a_new_leader_publishes_the_polls_missed_since_the_last_published_first_then_goes_on():
    source, published, asked = catching_up_source(last=T + 10, now_time=T + 30)
    asyncio.run(source.poll())
    # In order, so the windows see no late state; the last poll published again too (a leader that died
    # while publishing it may have reached some partitions only: the repeats are deduplicated).
    assert published == [T + 10, T + 15, T + 20, T + 25, T + 30]
    assert asked == [None, T + 10, T + 15, T + 20, T + 25]
    assert source.stats.polls_caught_up == 4 and source.stats.polls_missed == 0
    asyncio.run(source.poll())  # then live only
    assert published[5:] == [T + 30] and asked[5:] == [None]
    source.resume()  # the leader again, nothing missed since
    asyncio.run(source.poll())
    assert asked[6:] == [None] and source.stats.polls_caught_up == 4


def test_the_polls_that_came_while_a_leader_caught_up_are_caught_up_next():
    """OpenSky moves on while a new leader catches up (here 5 s per past poll fetched, as a slow
    answer would): the live poll it fetched first is old once it is published, so the next poll
    catches up from there, round after round, until a round finds nothing missed. (Found by the chaos
    soak: a leader that caught up 85 polls then skipped the 12 that came meanwhile.)"""
    published, asked, now = [], [], [T + 30]

    async def fetch(at_time=None):
        asked.append(at_time)
        if at_time is not None:
            now[0] += 5 if len(asked) < 6 else 0  # the first round takes 20 s of OpenSky's time
        t = now[0] if at_time is None else at_time
        return rows_response([*AIRBORNE[:3], t, t, *AIRBORNE[5:]], time_=t)

    async def publish(valid, invalid, poll_time):
        published.append(poll_time)

    async def last_published():
        return max(published, default=T + 10)

    source = StateSource(fetch, publish, Backoff(base_s=5.0, max_s=60.0, clock=Clock()), interval_s=5.0,
                         wall_clock=lambda: float(now[0]), last_published=last_published, can_ask_past=True)
    asyncio.run(source.poll())
    assert published == [T + 10, T + 15, T + 20, T + 25, T + 30] and now[0] == T + 50
    asyncio.run(source.poll())  # OpenSky is at T + 50: T + 35 .. T + 45 came meanwhile
    assert published[5:] == [T + 35, T + 40, T + 45, T + 50]
    asyncio.run(source.poll())  # nothing came meanwhile: live only from now on
    assert published[9:] == [T + 50] and asked[-1] is None
    asyncio.run(source.poll())
    assert published[10:] == [T + 50] and asked[-2:] == [None, None]
    assert source.stats.polls_caught_up == 7 and source.stats.polls_missed == 0
    assert sorted(set(published)) == list(range(T + 10, T + 55, 5))


@pytest.mark.parametrize("can_ask_past", [True, False])
def test_a_poll_time_skipped_while_polling_is_caught_up_at_opensky_s_resolution(can_ask_past):
    """Polling once a second (faster than OpenSky's 5 s resolution here) asks for no time in between;
    a poll that comes late and skips a poll time (a slow answer, a busy worker) fetches the skipped
    one before it publishes its own. Anonymous, nothing can be fetched: it goes on."""
    published, asked, now = [], [], [T]

    async def fetch(at_time=None):
        asked.append(at_time)
        t = (now[0] if at_time is None else at_time) // 5 * 5  # OpenSky's snapshots, 5 s apart
        return rows_response([*AIRBORNE[:3], t, t, *AIRBORNE[5:]], time_=t)

    async def publish(valid, invalid, poll_time):
        published.append(poll_time)

    source = StateSource(fetch, publish, Backoff(base_s=1.0, max_s=60.0, clock=Clock()), interval_s=1.0,
                         wall_clock=lambda: float(now[0]), can_ask_past=can_ask_past)
    for t in range(T, T + 21):  # a poll a second: every snapshot seen, most of them five times
        now[0] = t
        asyncio.run(source.poll())
    assert sorted(set(published)) == list(range(T // 5 * 5, T + 21, 5)) and set(asked) == {None}
    now[0] = T + 36  # late: the snapshots at +25 and +30 were never polled
    asyncio.run(source.poll())
    if can_ask_past:
        assert asked[-3:] == [None, T // 5 * 5 + 25, T // 5 * 5 + 30]
        assert published[-3:] == [T // 5 * 5 + 25, T // 5 * 5 + 30, T // 5 * 5 + 35]
        assert source.stats.polls_caught_up == 2 and source.stats.polls_missed == 0
    else:
        assert asked[-1] is None and published[-1] == T // 5 * 5 + 35 and source.stats.polls_caught_up == 0


def test_an_anonymous_leader_cannot_ask_for_the_past_and_counts_what_it_missed():
    source, published, asked = catching_up_source(last=T + 10, now_time=T + 30, can_ask_past=False)
    asyncio.run(source.poll())
    assert published == [T + 30] and asked == [None]
    assert source.stats.polls_missed == 3 and source.stats.polls_caught_up == 0


def test_a_leader_catches_up_the_newest_polls_opensky_still_keeps_and_no_more_than_allowed():
    from flights_app.source import PAST_LIMIT_S, missed_poll_times

    source, published, _ = catching_up_source(last=T - 2 * PAST_LIMIT_S, now_time=T, catch_up_max=4)
    asyncio.run(source.poll())
    assert published == [T - 20, T - 15, T - 10, T - 5, T]
    assert source.stats.polls_missed == 2 * PAST_LIMIT_S // 5 - 1 - 4
    assert missed_poll_times(T - 100, T, 5, most=1000) == list(range(T - 100, T, 5))
    assert missed_poll_times(T - 2 * PAST_LIMIT_S, T, 5, most=1000)[0] == T - PAST_LIMIT_S
    assert missed_poll_times(T - 5, T, 5, most=10) == [T - 5] and missed_poll_times(T + 50, T, 5, most=10) == []


def test_the_client_asks_opensky_for_a_past_time_as_its_time_parameter():
    state = fake_state(client_id="me", client_secret="s3cret-value", require_auth=True)

    async def body(session, base):
        tokens = TokenProvider(session, base + OPENSKY_TOKEN_PATH, "me", Secret("s3cret-value"))
        client = OpenSkyClient(session, base + "/api", tokens=tokens)
        return await client.fetch_states(at_time=T + 7)

    result = asyncio.run(with_fake(state, body))
    assert result.ok and result.response.time == T + 7  # the recorded poll of that time
