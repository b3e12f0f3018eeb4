import pytest

from flights_app.settings import (
    BoundingBox,
    Secret,
    SettingsError,
    credit_cost,
    load_settings,
    plan_polling,
)


def test_defaults_use_the_embedded_broker_and_the_real_api():
    s = load_settings({})
    assert s.broker is None and s.uses_embedded_broker
    assert s.broker_url == "kafka://127.0.0.1:9092"
    assert s.opensky_url == "https://opensky-network.org/api"
    assert (s.web_port, s.dashboard_port, s.topic_partitions, s.store) == (6066, 5006, 4, "rocksdb://")
    assert s.web_bind == "127.0.0.1"
    assert not s.authenticated


@pytest.mark.parametrize(
    "env, words",
    [
        ({"FLIGHTS_WEB_PORT": "http"}, "FLIGHTS_WEB_PORT='http' is not a whole number"),
        ({"FLIGHTS_WEB_PORT": "70000"}, "out of range"),
        ({"FLIGHTS_TOPIC_PARTITIONS": "0"}, "FLIGHTS_TOPIC_PARTITIONS=0 is out of range"),
        ({"FLIGHTS_BROKER": "localhost"}, "is not host:port"),
        ({"FLIGHTS_BROKER": "http://x:1"}, "only the kafka:// scheme"),
        ({"OPENSKY_URL": "ftp://x"}, "not an http(s) URL"),
        ({"FLIGHTS_BBOX": "1,2,3"}, "four numbers"),
        ({"FLIGHTS_BBOX": "50,0,40,10"}, "lamin < lamax"),
        ({"FLIGHTS_POLL_INTERVAL": "-1"}, "out of range"),
        ({"FLIGHTS_POLL_INTERVAL": "soon"}, "not a number of seconds"),
        ({"FLIGHTS_STORE": "redis://"}, "expected rocksdb:// or memory://"),
        ({"OPENSKY_CLIENT_ID": "me"}, "OPENSKY_CLIENT_SECRET is not set"),
        ({"FLIGHTS_LOG_LEVEL": "loud"}, "expected one of"),
        ({"FLIGHTS_DASHBOARD_ORIGINS": "a.example.org, http://b"}, "'http://b' is not host or host:port"),
        ({"FLIGHTS_WEB_HOST": "a b"}, "FLIGHTS_WEB_HOST='a b' is not a host name"),
        ({"FLIGHTS_SESSION_TIMEOUT": "3"}, "expected 6..90 seconds"),
        ({"FLIGHTS_STANDBY_REPLICAS": "-1"}, "out of range"),
        ({"FLIGHTS_WORKER_URL": "worker:6066"}, "not an http(s) URL"),
        ({"FLIGHTS_WORKER_ID": "a b"}, "FLIGHTS_WORKER_ID='a b' must be letters"),
    ],
)
def test_a_wrong_value_names_the_variable_and_what_it_accepts(env, words):
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    assert words in str(error.value)


def test_a_worker_is_the_same_static_member_while_its_host_data_directory_and_address_stay(tmp_path):
    same = load_settings({"FLIGHTS_DATADIR": str(tmp_path / "a")}).worker_id
    assert same and same == load_settings({"FLIGHTS_DATADIR": str(tmp_path / "a")}).worker_id
    assert same != load_settings({"FLIGHTS_DATADIR": str(tmp_path / "b")}).worker_id
    # another web address: another member (a returning member is handed the assignment of its old address)
    assert same != load_settings({"FLIGHTS_DATADIR": str(tmp_path / "a"), "FLIGHTS_WEB_PORT": "6067"}).worker_id
    named = load_settings({"FLIGHTS_WORKER_ID": "worker-3"}).worker_id
    assert named.startswith("worker-3-") and named != load_settings(
        {"FLIGHTS_WORKER_ID": "worker-3", "FLIGHTS_WEB_PORT": "6067"}).worker_id
    assert load_settings({"FLIGHTS_WORKER_ID": "none"}).worker_id is None


def test_a_cluster_gets_production_defaults_and_a_container_advertises_its_host_name(tmp_path):
    import socket

    (tmp_path / "token").write_text("t" * 20)
    (tmp_path / "users.json").write_text('{"ops": "pw"}')
    secured = {"FLIGHTS_WEB_TOKEN_FILE": str(tmp_path / "token"),
               "FLIGHTS_DASHBOARD_AUTH_FILE": str(tmp_path / "users.json")}
    cluster = load_settings({"FLIGHTS_BROKER": "kafka-1:9092;kafka-2:9092", "FLIGHTS_WEB_BIND": "0.0.0.0",
                             "FLIGHTS_DASHBOARD_ORIGINS": "flights.example.org, 10.0.0.5:5006", **secured})
    assert cluster.topic_partitions == 8 and load_settings({}).topic_partitions == 4
    assert cluster.web_host == socket.gethostname()  # what other workers can reach, not 0.0.0.0
    assert cluster.worker_url == "http://127.0.0.1:6066"
    assert cluster.dashboard_origins == ("flights.example.org", "10.0.0.5:5006")
    assert load_settings({"FLIGHTS_WEB_BIND": "10.1.2.3", **secured}).web_host == "10.1.2.3"
    assert (cluster.standby_replicas, cluster.session_timeout_s) == (1, 60.0)


def test_broker_list_is_normalised():
    s = load_settings({"FLIGHTS_BROKER": "k1:9092, k2:9092"})
    assert s.broker_url == "kafka://k1:9092;k2:9092"


def test_secret_never_shows_in_repr():
    s = load_settings({"OPENSKY_CLIENT_ID": "me", "OPENSKY_CLIENT_SECRET": "hunter2-very-secret"})
    assert s.authenticated
    assert "hunter2" not in repr(s)
    assert "hunter2" not in repr(Secret("hunter2"))
    assert str(s.opensky_client_secret) == "hunter2-very-secret"


@pytest.mark.parametrize("box, cost", [
    (None, 4), (BoundingBox(0, 0, 5, 5), 1), (BoundingBox(0, 0, 10, 10), 2),
    (BoundingBox(0, 0, 20, 20), 3), (BoundingBox(0, 0, 30, 30), 4),
])
def test_credit_cost_follows_the_box_area(box, cost):
    assert credit_cost(box) == cost


def test_derived_interval_makes_the_credits_last_the_day():
    anonymous_global = plan_polling(None, False, None, 400)
    assert anonymous_global.interval_s == pytest.approx(86400 * 4 / 400)  # 864 s
    assert anonymous_global.derived and anonymous_global.credits_exhausted_after_s is None
    small_box = BoundingBox(38, -78, 39, -77)
    authenticated = plan_polling(None, True, small_box, 4000)
    assert authenticated.interval_s == pytest.approx(86400 / 4000)  # 21.6 s


def test_derived_interval_never_goes_below_the_api_resolution():
    assert plan_polling(None, False, BoundingBox(0, 0, 1, 1), 10**6).interval_s == 10.0
    assert plan_polling(None, True, BoundingBox(0, 0, 1, 1), 10**6).interval_s == 5.0
    assert plan_polling(None, True, None, 0).interval_s == 5.0  # unlimited credits


def test_explicit_interval_that_spends_the_credits_says_when():
    plan = plan_polling(10.0, False, None, 400)
    assert plan.interval_s == 10.0 and not plan.derived
    assert plan.credits_exhausted_after_s == pytest.approx(400 / 4 * 10.0)  # 100 polls
    assert plan_polling(900.0, False, None, 400).credits_exhausted_after_s is None


def test_the_settings_tables_of_the_docs_are_the_declarations_own():
    """docs/settings.md and the README's table are generated from the Settings fields' declarations
    (``python -m flights_app.settings`` writes them)."""
    from flights_app.settings import PROJECT_ROOT, SETTINGS_DOC, settings_table

    def block(path):
        return path.read_text().split("<!-- settings:start -->\n", 1)[1].split("\n<!-- settings:end -->", 1)[0]
    assert block(PROJECT_ROOT / "docs" / "settings.md") == settings_table(), "run: python -m flights_app.settings"
    readme = PROJECT_ROOT / "README.md"
    assert block(readme) == settings_table(main_only=True), "run: python -m flights_app.settings"
    assert len(SETTINGS_DOC) > 50 and block(readme).count("\n| `") >= 8
    readme = readme.read_text()
    assert readme.splitlines()[3:5] == [
        "make run    # installs what it needs, then starts Kafka, the source, the worker and the dashboard (:5006); "
        "Ctrl-C stops all",
        "make test   # installs what it needs, then runs every test (a real Kafka broker is started for them)",
    ]


def test_kafka_logins_are_checked_and_their_password_stays_hidden(tmp_path):
    import faust

    password = tmp_path / "kafka-password"
    password.write_text("k4fka-" + "x" * 20 + "\n")
    with pytest.raises(SettingsError, match="needs FLIGHTS_KAFKA_USER and FLIGHTS_KAFKA_PASSWORD_FILE"):
        load_settings({"FLIGHTS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    with pytest.raises(SettingsError, match="need a SASL_ protocol"):
        load_settings({"FLIGHTS_KAFKA_USER": "worker", "FLIGHTS_KAFKA_PASSWORD_FILE": str(password)})
    with pytest.raises(SettingsError, match="expected one of PLAINTEXT"):
        load_settings({"FLIGHTS_KAFKA_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(SettingsError, match="FLIGHTS_KAFKA_SASL_MECHANISM='GSSAPI'"):
        load_settings({"FLIGHTS_KAFKA_SASL_MECHANISM": "gssapi"})
    with pytest.raises(SettingsError, match="no such file"):
        load_settings({"FLIGHTS_KAFKA_CA_FILE": str(tmp_path / "missing.pem")})
    s = load_settings({"FLIGHTS_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext", "FLIGHTS_KAFKA_USER": "worker",
                       "FLIGHTS_KAFKA_PASSWORD_FILE": str(password)})
    security = s.kafka_security
    assert security.password == "k4fka-" + "x" * 20 and "k4fka" not in repr(s) + repr(security) + security.describe()
    assert security.client_options() == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                         "sasl_plain_username": "worker", "sasl_plain_password": security.password}
    credentials = security.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials) and "k4fka" not in repr(credentials)
    assert load_settings({}).kafka_security.faust_credentials() is None  # plaintext: Faust's default
