"""The scoring agent on the embedded Kafka: N raw states in, N scored states out."""

from __future__ import annotations

import asyncio
import collections
import json
import secrets

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from flights_app.records import STATE_FIELDS
from flights_app.topic_names import ALERTS, PROCESSED, RAW
from ml.features import FEATURES
from ml.phase import PHASES
from tests.harness import (
    FakeOpenSky,
    TestApp,
    http_get,
    http_json,
    read_states,
    read_topic,
    wait_until,
)
from tests.monitoring import exposed_samples

pytestmark = pytest.mark.kafka

SCORED_FIELDS = {"state", "features", "flight_phase", "ml_anomaly_score", "ml_is_anomaly", "anomaly_reason",
                 "alerts", "data_faults", "model_version", "processed_time"}


def state_json(icao24: str, t: int, lat: float, lon: float, velocity: float = 230.0, altitude: float = 10000.0,
               squawk: str = "2000", poll: str = "p") -> dict:
    return {"icao24": icao24, "callsign": "TST1", "origin_country": "Testland", "time_position": t,
            "last_contact": t, "longitude": lon, "latitude": lat, "baro_altitude": altitude, "on_ground": False,
            "velocity": velocity, "true_track": 90.0, "vertical_rate": 0.0, "sensors": None,
            "geo_altitude": altitude + 50, "squawk": squawk, "spi": False, "position_source": 0, "category": None,
            "ingest_time": float(t), "poll_id": poll}


def produce(bootstrap: str, topic: str, states: list[dict]) -> None:
    """Single-state records keyed by icao24 (``produce_records``)."""
    import json

    produce_records(bootstrap, topic, [(None, s["icao24"].encode(), json.dumps(s).encode()) for s in states])


def produce_records(bootstrap: str, topic: str, records: list[tuple[int | None, bytes, bytes]]) -> None:
    """(partition, key, value) records onto ``topic``, in order (partition None: by the key)."""
    async def send():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for partition, key, value in records:
                await producer.send(topic, value, key=key, partition=partition)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send())


def wait_all_scored(app: TestApp, what: str, timeout_s: float = 90):
    """Wait until flight-processed-data holds as many records as flight-raw-data; return both."""
    def all_scored():
        app.check_workers()
        raw = read_states(app.bootstrap, app.topic(RAW))
        processed = read_topic(app.bootstrap, app.topic(PROCESSED))
        return raw and len(processed) == len(raw) and (raw, processed)

    return wait_until(all_scored, timeout_s, what, interval_s=0.5)


def test_every_simulated_state_is_scored_once_with_every_field(kafka, tmp_path, cleanup):
    # Many anomalies, so that emergency squawks (a sixth of them) are certain to occur.
    fake = FakeOpenSky(tmp_path, "--simulate", "60", "--seed", "9", "--anomaly-rate", "0.3")
    cleanup.append(fake)
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL=fake.api_url, FLIGHTS_POLL_INTERVAL="0.5")
    cleanup.append(app)
    worker = app.start_worker()
    # The simulator's anomalies follow its clock: wait for one emergency squawk among what was served.
    wait_until(lambda: app.check_workers() or (fake.stats()["requests"] >= 6 and any(
        label["kind"] == "emergency_squawk" for label in fake.labels())), 120, "six polls and an emergency squawk")
    fake.control(paused=True)
    raw, processed = wait_all_scored(app, "as many scored states as raw ones")
    key = lambda s: (s["icao24"], s["last_contact"])  # noqa: E731
    assert collections.Counter(key(v["state"]) for _, v in processed) == collections.Counter(key(v) for _, v in raw)
    for k, scored in processed:
        assert set(scored) == SCORED_FIELDS
        assert k == scored["state"]["icao24"] and set(STATE_FIELDS) <= set(scored["state"])
        assert list(scored["features"]) == list(FEATURES)
        assert scored["flight_phase"] in PHASES
        assert 0 < scored["ml_anomaly_score"] <= 1
        assert (scored["anomaly_reason"] is not None) == scored["ml_is_anomaly"]
        assert len(scored["model_version"]) == 12
    phases = collections.Counter(v["flight_phase"] for _, v in processed)
    assert {"ground", "cruise"} <= set(phases)
    # The labelled emergency squawks all raise an alert on flight-alerts.
    squawks = {(lb["icao24"], lb["last_contact"]) for lb in fake.labels() if lb["kind"] == "emergency_squawk"}
    alerted = {(v["icao24"], v["last_contact"]) for _, v in read_topic(app.bootstrap, app.topic(ALERTS))
               if any(r.startswith("emergency squawk") for r in v["reasons"])}
    assert squawks, "the simulator injected no emergency squawk"
    assert squawks <= alerted
    assert worker.alive()
    status, body = post(f"http://127.0.0.1:{worker.web_port}/model/reload")
    assert status == 403 and "FLIGHTS_WEB_TOKEN_FILE" in body["error"]  # no token, no reload


def test_per_aircraft_deltas_survive_a_worker_restart(kafka, tmp_path, cleanup):
    """The previous state lives in a RocksDB table with a changelog: after a restart (even with the
    data directory gone) the next state of an aircraft is compared with the one before the restart."""
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL="http://127.0.0.1:9/api", FLIGHTS_POLL_INTERVAL="3600")
    cleanup.append(app)
    t0 = 1_700_000_000
    aircraft = [f"{0xa00000 + i:06x}" for i in range(12)]  # spread over the 4 partitions
    first = [state_json(a, t0, 40.0 + i * 0.1, -75.0, velocity=200.0, altitude=9000.0) for i, a in enumerate(aircraft)]
    worker = app.start_worker("w1")
    produce(app.bootstrap, app.topic(RAW), first)

    def distinct_scored():  # at least once: a restart may score a state again
        processed = read_topic(app.bootstrap, app.topic(PROCESSED))
        return {(v["state"]["icao24"], v["state"]["last_contact"]): v for _, v in processed}

    wait_until(lambda: app.check_workers() or len(distinct_scored()) == 12, 120, "the first 12 scored states")
    worker.stop()
    import shutil

    shutil.rmtree(tmp_path / "w1")  # the RocksDB files are gone: only the changelog remains

    # 10 s later each aircraft has moved 0.02 degrees east (~1.7 km: ~170 m/s) and sped up by 20 m/s.
    second = [state_json(a, t0 + 10, 40.0 + i * 0.1, -74.98, velocity=220.0, altitude=9100.0)
              for i, a in enumerate(aircraft)]
    app.start_worker("w1")
    # One partition at a time, so every batch after the restart holds a single partition. A table
    # access made under another event's partition (faust-streaming #497) would read the previous
    # states from the wrong RocksDB partition and miss them in at least three of the four.
    partition = lambda s: DefaultPartitioner()(s["icao24"].encode(), [0, 1, 2, 3], [0, 1, 2, 3])  # noqa: E731
    groups = collections.defaultdict(list)
    for state in second:
        groups[partition(state)].append(state)
    assert len(groups) == 4
    expected = 12
    for group in groups.values():
        produce(app.bootstrap, app.topic(RAW), group)
        expected += len(group)
        scored = wait_until(lambda n=expected: app.check_workers() or (lambda d: len(d) == n and d)(distinct_scored()),
                            120, f"{expected} scored states")
    after = [v for (_, t), v in scored.items() if t == t0 + 10]
    assert len(after) == 12
    for scored in after:
        f = scored["features"]
        assert f["new_track"] == 0 and f["position_gap_s"] == 10.0
        assert f["speed_accel_mps2"] == pytest.approx(2.0)  # +20 m/s in 10 s
        assert f["climb_rate_mps"] == pytest.approx(10.0)  # +100 m in 10 s
        assert 150 < f["implied_speed_mps"] < 190  # from the position jump, not the reported speed
    stats = http_json(f"http://127.0.0.1:{app.workers[-1].web_port}/source/")
    assert stats["source"] is not None


def small_model(path, seed: int) -> str:

    from ml import dataset
    from ml import model as model_io

    X = dataset.clean_features(dataset.feature_rows(dataset.simulated_polls(20, seed=seed, minutes=2, anomaly_rate=0)))
    pipeline, scale = model_io.train(X, n_estimators=20, random_state=seed)
    return model_io.save(pipeline, path, scale=scale, calibration=model_io.calibrate(pipeline, scale, X),
                         training_rows=len(X), source=f"test seed {seed}", params={})["version"]


def post(url: str, token: str | None = None):
    import json
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST", headers=headers),
                                    timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_new_model_is_picked_up_without_restart_and_a_tampered_one_refused(kafka, tmp_path, cleanup):
    model_path = tmp_path / "models" / "live.joblib"
    first = small_model(model_path, seed=1)
    fake = FakeOpenSky(tmp_path, "--simulate", "30")
    cleanup.append(fake)
    token = secrets.token_urlsafe(24)
    (tmp_path / "web-token").write_text(token + "\n")
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL=fake.api_url, FLIGHTS_POLL_INTERVAL="0.3",
                  FLIGHTS_MODEL=str(model_path), FLIGHTS_MODEL_WATCH="0.5", FLIGHTS_MODEL_RELOAD_ENDPOINT="1",
                  FLIGHTS_WEB_TOKEN_FILE=str(tmp_path / "web-token"))
    cleanup.append(app)
    worker = app.start_worker()
    versions = lambda: {v["model_version"] for _, v in read_topic(app.bootstrap, app.topic(PROCESSED))}  # noqa: E731
    wait_until(lambda: app.check_workers() or first in versions(), 120, f"states scored by model {first}")

    second = small_model(model_path, seed=2)  # written over the live file, manifest first
    wait_until(lambda: app.check_workers() or second in versions(), 60, f"states scored by model {second}")

    data = bytearray(model_path.read_bytes())
    data[100] ^= 0xFF
    model_path.write_bytes(bytes(data))
    reload = f"http://127.0.0.1:{worker.web_port}/model/reload"
    for wrong in (None, token[:-1] + ("x" if token[-1] != "x" else "y")):  # POST /model/reload asks for the token
        status, body = post(reload, wrong)
        assert status == 401 and "bearer token" in body["error"] and token not in json.dumps(body)
    status, body = post(reload, token)
    assert status == 409 and "does not match its manifest" in body["message"]
    assert body["model"]["version"] == second  # kept the model it had
    metrics = exposed_samples(http_get(f"http://127.0.0.1:{worker.web_port}/metrics")[2])
    assert (metrics["flights_model_refused"], metrics["flights_model_reloads_refused_total"]) == (1, 1)
    assert metrics["flights_model_loaded"] == 1  # what Prometheus alerts on (monitoring/prometheus/alerts.yml)
    fake.control(paused=True)
    _, processed = wait_all_scored(app, "every raw state scored: none dropped by the swaps")
    assert {v["model_version"] for _, v in processed} == {first, second}
    assert "Model reload refused, keeping model" in worker.log_text()


def test_batches_and_single_states_are_scored_and_bad_ones_rejected_once_with_their_place(kafka, tmp_path,
                                                                                          cleanup):
    """flight-raw-data as the source writes it (a batch per partition), with a bad state inside a good
    batch, an undecodable batch, single states as older tools write them, and a single state in
    the wrong partition: every good state is scored once, every bad one rejected once with its reason."""
    import orjson

    from flights_app.batches import pack
    from flights_app.partitioner import partition_for
    from flights_app.topic_names import INVALID

    app = TestApp(tmp_path, kafka.url, OPENSKY_URL="http://127.0.0.1:9/api", FLIGHTS_POLL_INTERVAL="3600")
    cleanup.append(app)
    worker = app.start_worker()
    t0 = 1_700_000_000
    batched = [state_json(f"{0xb00000 + i:06x}", t0, 40.0 + i * 0.01, -75.0, poll="batch") for i in range(40)]
    batched[7]["latitude"] = 95.0  # one bad state among good ones
    singles = [state_json(f"{0xc00000 + i:06x}", t0, 41.0, -75.0 + i * 0.01, poll="single") for i in range(3)]
    stray = state_json("c0ffee", t0, 42.0, -75.0, poll="stray")
    home = partition_for(b"c0ffee", app.partitions)
    records = [(p, k, v) for p, k, v in pack(((s["icao24"], orjson.dumps(s)) for s in batched), app.partitions)]
    records.append((0, b"b00000", b'{"kind": "states", "states": [{"icao24": '))  # cut short: not JSON
    records += [(None, s["icao24"].encode(), orjson.dumps(s)) for s in singles]
    records.append(((home + 1) % app.partitions, b"c0ffee", orjson.dumps(stray)))
    produce_records(app.bootstrap, app.topic(RAW), records)
    good = {s["icao24"] for s in batched if s["latitude"] <= 90} | {s["icao24"] for s in singles}
    scored = lambda: collections.Counter(v["state"]["icao24"] for _, v in read_topic(app.bootstrap,  # noqa: E731
                                                                                      app.topic(PROCESSED)))
    wait_until(lambda: app.check_workers() or set(scored()) == good, 120, f"{len(good)} states scored")
    invalid = lambda: sorted((v["reason"], v["icao24"]) for _, v in read_topic(  # noqa: E731
        app.bootstrap, app.topic(INVALID)))
    expected = sorted([("latitude_out_of_range", batched[7]["icao24"]), ("not_json", "b00000"),
                       ("wrong_partition", "c0ffee")])
    wait_until(lambda: app.check_workers() or invalid() == expected, 60, "three rejections")
    assert set(scored().values()) == {1}  # each good state once
    places = {v["reason"]: v["poll_id"] for _, v in read_topic(app.bootstrap, app.topic(INVALID))}
    assert places["latitude_out_of_range"].startswith(f"{app.topic(RAW)}:") and "#" in places["latitude_out_of_range"]
    assert places["not_json"].startswith(f"{app.topic(RAW)}:0:") and "#" not in places["not_json"]
    scorer = http_json(f"http://127.0.0.1:{worker.web_port}/model/")["scorer"]
    assert scorer["events"] == len(good) + 3  # states, not messages: the good ones and the three rejected


def test_a_country_with_more_aircraft_in_a_batch_than_one_partials_message_holds_is_counted_exactly(
        kafka, tmp_path, cleanup):
    """One poll of 5,000 aircraft of one country: each partition's batch holds over 1,000 of them, so
    their window partials travel in several messages (agents.windows.MAX_PARTIALS); the total is exact."""
    import orjson

    from flights_app.batches import pack
    from flights_app.topic_names import AGGREGATED

    app = TestApp(tmp_path, kafka.url, OPENSKY_URL="http://127.0.0.1:9/api", FLIGHTS_POLL_INTERVAL="3600",
                  FLIGHTS_AGGREGATE_FLUSH="0.5")
    cleanup.append(app)
    app.start_worker()
    t0 = 1_700_000_000
    states = [state_json(f"{0xd00000 + i:06x}", t0, 40.0 + (i % 100) * 0.01, -75.0 + (i // 100) * 0.01,
                         poll="big") for i in range(5000)]
    records = list(pack(((s["icao24"], orjson.dumps(s)) for s in states), app.partitions))
    assert len(records) == app.partitions  # one batch per partition, each well over 1,000 aircraft
    produce_records(app.bootstrap, app.topic(RAW), records)

    def testland_events():
        app.check_workers()
        latest = {}
        for _, r in read_topic(app.bootstrap, app.topic(AGGREGATED)):
            if r["dimension"] == "country" and r["name"] == "Testland":
                if latest.get("emitted_at", 0) <= r["emitted_at"]:
                    latest = r
        return latest.get("events")

    wait_until(lambda: testland_events() == 5000, 120, "Testland's window to count all 5,000 states")


def test_every_window_s_newest_record_counts_every_state_while_flushes_interleave_the_group_stage(
        kafka, tmp_path, cleanup):
    """50 countries of 400 aircraft, 2 polls, window records flushed every 50 ms: a flush that runs while
    the group stage is still writing a window's entries must not publish it without the change and
    forget it (each window's newest record counts every state)."""
    import orjson

    from flights_app.batches import pack
    from flights_app.topic_names import AGGREGATED

    app = TestApp(tmp_path, kafka.url, OPENSKY_URL="http://127.0.0.1:9/api", FLIGHTS_POLL_INTERVAL="3600",
                  FLIGHTS_AGGREGATE_FLUSH="0.05")
    cleanup.append(app)
    app.start_worker()
    t0 = 1_700_000_000 // 600 * 600 + 60
    records = []
    for poll in range(2):
        states = [{**state_json(f"{0xe00000 + i:06x}", t0 + poll * 5, 40.0 + (i % 100) * 0.01,
                                -75.0 + (i // 100) * 0.01, poll=f"p{poll}"), "origin_country": f"Country {i % 50}"}
                  for i in range(20_000)]
        records += pack(((s["icao24"], orjson.dumps(s)) for s in states), app.partitions)
    produce_records(app.bootstrap, app.topic(RAW), records)

    def newest_counts() -> dict[str, int]:
        app.check_workers()
        latest: dict[str, dict] = {}
        for _, r in read_topic(app.bootstrap, app.topic(AGGREGATED)):
            if r["dimension"] == "country" and latest.get(r["name"], {}).get("emitted_at", 0) <= r["emitted_at"]:
                latest[r["name"]] = r
        return {name: r["events"] for name, r in latest.items()}

    expected = {f"Country {c}": 400 * 2 for c in range(50)}
    try:
        wait_until(lambda: newest_counts() == expected, 180, "every country's newest record to count 800 states")
    except AssertionError:
        wrong = {k: v for k, v in newest_counts().items() if v != 800}
        raise AssertionError(f"{len(wrong)} countries' newest records wrong: "
                             f"{dict(list(wrong.items())[:10])}") from None
