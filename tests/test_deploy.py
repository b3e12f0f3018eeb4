"""The production deployment (docker-compose.yml, Dockerfile) without a Docker engine: the compose
file validates with Debian's docker-compose, every variable it sets is a setting, every service's
command starts here against the embedded broker with the file's own environment and passes the
file's own health check, the topics it makes are configured for production, and the image's
install steps (a wheel of the app, installed elsewhere) give a working app with its default model."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from flights_app.settings import SETTINGS_DOC, load_settings
from flights_app.topic_names import PROCESSED, RAW
from tests.harness import ROOT, Proc, free_port, wait_until

COMPOSE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent
#: Variables the compose file reads that are docker-compose's, not the app's.
COMPOSE_ONLY = {"FLIGHTS_IMAGE": "the image name", "KAFKA_CLUSTER_ID": "the KRaft cluster id",
                "GRAFANA_ADMIN_USER": "Grafana's administrator", "GRAFANA_ADMIN_PASSWORD": "Grafana's administrator",
                "PROMETHEUS_RETENTION": "how long Prometheus keeps metrics"}
APP_SERVICES = ("worker", "dashboard", "opensky-fake")
BROKERS = ("kafka-1", "kafka-2", "kafka-3")
#: One-shot services: they run once and exit (the others wait for them to finish).
ONE_SHOT = ("kafka-setup",)
#: The app's settings that log a service in to the compose cluster (its TLS and SCRAM login).
KAFKA_LOGIN = ("FLIGHTS_KAFKA_SECURITY_PROTOCOL", "FLIGHTS_KAFKA_SASL_MECHANISM", "FLIGHTS_KAFKA_USER",
               "FLIGHTS_KAFKA_PASSWORD_FILE", "FLIGHTS_KAFKA_CA_FILE")


def docker_compose(*args: str, file: Path = COMPOSE) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    assert exe, ("docker-compose is not installed: `make install` installs Debian's package "
                 "(apt-get install docker-compose)")
    return subprocess.run([exe, "-f", str(file), "--project-directory", str(file.parent), *args],
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})


def resolved(*profiles: str) -> dict:
    """The compose file as docker-compose resolves it (anchors merged, ${...} filled from defaults)."""
    args = [a for p in profiles for a in ("--profile", p)]
    result = docker_compose(*args, "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_compose_file_validates_in_each_profile(tmp_path):
    for profiles in ((), ("single",), ("offline",)):
        args = [a for p in profiles for a in ("--profile", p)]
        result = docker_compose(*args, "config", "-q")
        assert result.returncode == 0, (profiles, result.stderr)
    # Which services each profile adds (docker-compose 1.29's `config` lists them all, with their profiles).
    services = resolved()["services"]
    by_profile = {name: tuple(service.get("profiles", ())) for name, service in services.items()}
    assert by_profile == {**{b: () for b in BROKERS}, "kafka-setup": (), "worker": (), "dashboard": (),
                          "history-writer": (),
                          "kafka": ("single",),
                          "opensky-fake": ("offline",), "prometheus": (), "grafana": ()}
    # The check can fail: a copy with a misspelt key is refused.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    healthcheck:\n", "    healthchek:\n", 1))
    result = docker_compose("config", "-q", file=broken)
    assert result.returncode != 0 and "healthchek" in result.stderr, result.stderr


def test_the_cluster_is_replicated_and_every_service_is_supervised():
    config = resolved("single", "offline")
    services = config["services"]
    voters = "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
    for n, name in enumerate(BROKERS, start=1):
        env = services[name]["environment"]
        assert env["KAFKA_NODE_ID"] == str(n) and env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"CLIENT://{name}:9092,INTERNAL://{name}:9094"
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")
        assert (env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"], env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == ("3", "2")
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"]), "a KRaft cluster id is 16 bytes, base64"
        assert services[name]["image"].startswith("apache/kafka:3.9")
    assert len({services[b]["volumes"][0].split(":")[0] for b in BROKERS}) == 3  # a disk each
    single = services["kafka"]["environment"]
    assert single["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093" and single["KAFKA_MIN_INSYNC_REPLICAS"] == "1"
    worker = services["worker"]["environment"]
    assert worker["FLIGHTS_BROKER"] == "kafka://kafka-1:9092;kafka-2:9092;kafka-3:9092"
    assert (worker["FLIGHTS_TOPIC_PARTITIONS"], worker["FLIGHTS_TOPIC_REPLICATION"]) == ("8", "3")
    # Scalable: no fixed name or host port, tables on an anonymous volume (one per replica); the history
    # in a named volume every replica reads (and only the history writer writes).
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    assert services["worker"]["volumes"] == ["/data", "history:/history:ro"]
    for name, service in services.items():
        if name in ONE_SHOT:  # restarted only if it fails; the app's services wait for it to finish
            assert service["restart"] == "on-failure" and all(
                services[s]["depends_on"][name] == {"condition": "service_completed_successfully"}
                for s in ("worker", "dashboard"))
            continue
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), name
        for port in service.get("ports", ()):
            assert str(port).startswith("127.0.0.1:"), (name, port)  # published on loopback only
    assert worker["OPENSKY_CLIENT_SECRET"] == "", "no secret in the file: it comes from .env"


def test_every_kafka_listener_asks_for_tls_and_each_service_logs_in_as_its_own_principal():
    services = resolved("single")["services"]
    for name in (*BROKERS, "kafka"):
        env = services[name]["environment"]
        protocols = dict(pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        assert protocols == {"CLIENT": "SASL_SSL", "INTERNAL": "SSL", "CONTROLLER": "SSL"}, protocols
        assert "PLAINTEXT" not in env["KAFKA_LISTENERS"] + env["KAFKA_ADVERTISED_LISTENERS"]
        # The image's start script takes over TLS for a listener named like "SSL://" (and asks for JKS
        # files with passwords); these names keep it out.
        assert "SSL://" not in env["KAFKA_ADVERTISED_LISTENERS"] and "SASL_" not in env["KAFKA_ADVERTISED_LISTENERS"]
        assert env["KAFKA_SSL_CLIENT_AUTH"] == "required" and env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
        assert {m["source"] for m in services[name]["secrets"]} == {"kafka-broker.pem", "kafka-ca.pem"}
    users = {}
    for name in ("worker", "dashboard"):
        env = services[name]["environment"]
        assert env["FLIGHTS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["FLIGHTS_KAFKA_CA_FILE"]
        users[name] = env["FLIGHTS_KAFKA_USER"]
        assert env["FLIGHTS_KAFKA_PASSWORD_FILE"] == f"/run/secrets/kafka-{users[name]}-password"
        mounted = {m["source"] for m in services[name]["secrets"]}
        assert f"kafka-{users[name]}-password" in mounted and "kafka-broker.pem" not in mounted  # not the brokers' key
    assert users == {"worker": "worker", "dashboard": "dashboard"}
    setup = services["kafka-setup"]
    assert setup["image"] == services["kafka-1"]["image"]  # Kafka's own tools, of the brokers' version
    assert setup["volumes"] == ["./flights_app/embedded/kafka-setup.sh:/kafka-setup.sh:ro"] or \
        setup["volumes"] == [f"{ROOT}/flights_app/embedded/kafka-setup.sh:/kafka-setup.sh:ro"], setup["volumes"]


def test_every_variable_of_the_compose_file_is_a_setting(tmp_path):
    from flights_app import dev_secrets

    text = COMPOSE.read_text()
    dev_secrets.write(tmp_path)  # what compose mounts at /run/secrets/, as make secrets writes it
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    unknown = interpolated - set(SETTINGS_DOC) - set(COMPOSE_ONLY)
    assert not unknown, f"compose variables no setting knows: {sorted(unknown)}"
    services = resolved("single", "offline")["services"]
    for name in APP_SERVICES:
        env = services[name].get("environment", {})
        unknown = set(env) - set(SETTINGS_DOC)
        assert not unknown, f"{name} sets variables the settings module does not know: {sorted(unknown)}"
        # and their values are valid settings
        load_settings({k: str(v).replace("/run/secrets/", f"{tmp_path}/") for k, v in env.items()})
    example = (ROOT / ".env.example").read_text()
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.M))
    assert names and not names - set(SETTINGS_DOC) - set(COMPOSE_ONLY), sorted(names - set(SETTINGS_DOC))
    assert not re.search(r"^OPENSKY_CLIENT_SECRET=\S", example, flags=re.M), "the example carries no secret"


def local(value: str, ports: dict[str, int]) -> str:
    """A compose value as it runs here: loopback instead of all addresses, free ports instead of fixed ones."""
    value = value.replace("0.0.0.0", "127.0.0.1")
    for fixed, free in ports.items():
        value = re.sub(rf"(?<=:){fixed}\b", str(free), value)
        value = value if value != fixed else str(free)
    return value


@pytest.mark.kafka
def test_every_service_command_starts_here_and_passes_its_health_check(kafka, tmp_path, cleanup):
    """Each app service's command, with the compose file's environment (the broker, host names and
    ports made local, replication 1 on one broker), starts and passes the compose file's own health
    check; the worker makes its topics with the production partition count and compacted changelogs."""
    services = resolved("offline")["services"]
    ports = {"6066": free_port(), "5006": free_port(), "8081": free_port()}
    # The compose secrets, as `make secrets` writes them, where compose mounts them (/run/secrets/).
    made = subprocess.run([str(BIN / "flights-app"), "dev-secrets", "--out", str(tmp_path / "secrets")],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    declared = resolved("offline")["secrets"]
    assert {m["source"] for s in services.values() for m in s.get("secrets", [])} == set(declared)
    for name in declared:
        secret = (tmp_path / "secrets" / name).read_text().strip()
        assert secret not in made.stdout and secret not in COMPOSE.read_text()
    tag = tmp_path.name[-8:].replace("_", "")
    hosts = {"http://worker:": "http://127.0.0.1:", "http://opensky-fake:": "http://127.0.0.1:"}
    started = {}
    for name in ("opensky-fake", "worker", "dashboard"):  # in the order the demo needs them
        service = services[name]
        env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path)}
        for key, value in service.get("environment", {}).items():
            value = str(value)
            for host, here in hosts.items():
                value = value.replace(host, here)
            value = value.replace("/run/secrets/", f"{tmp_path / 'secrets'}/")
            env[key] = local(value, ports)
        for key in KAFKA_LOGIN:  # the session's broker is plaintext (the secured cluster: the test below)
            env.pop(key, None)
        env.update(FLIGHTS_BROKER=kafka.url, FLIGHTS_TOPIC_REPLICATION="1", FLIGHTS_APP_ID=f"deploy-{tag}",
                   FLIGHTS_TOPIC_PREFIX=f"d{tag}-", FLIGHTS_WEB_PORT=str(ports["6066"]),
                   FLIGHTS_DASHBOARD_PORT=str(ports["5006"]), FLIGHTS_DATADIR=str(tmp_path / name),
                   OPENSKY_URL=f"http://127.0.0.1:{ports['8081']}/api", FLIGHTS_DAILY_CREDITS="0",
                   FLIGHTS_POLL_INTERVAL="2")
        command = [local(part, ports) for part in service["command"]]
        assert command[0] == "flights-app", command
        process = Proc(name, [str(BIN / command[0]), *command[1:]], env, tmp_path / f"{name}.log")
        cleanup.append(process)
        started[name] = process
        check = [local(part, ports) for part in service["healthcheck"]["test"][1:]]

        def healthy(process=process, check=check):
            assert process.alive(), f"{process.name} exited:\n{process.tail()}"
            return subprocess.run([str(BIN / check[0]), *check[1:]], capture_output=True, timeout=30).returncode == 0

        wait_until(healthy, 240, f"{name}'s health check {check}", interval_s=1)
    # The dashboard asks for its login first (the compose file gives it the users file).
    with urllib.request.urlopen(f"http://127.0.0.1:{ports['5006']}/", timeout=30) as response:
        assert "/login" in response.url and 'name="password"' in response.read().decode()

    settings = load_settings({"FLIGHTS_BROKER": kafka.url, "FLIGHTS_TOPIC_PREFIX": f"d{tag}-"})
    assert settings.topic_partitions == 8  # a cluster's default

    async def describe():
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            names = [n for n in await admin.list_topics() if n.startswith((f"deploy-{tag}", f"d{tag}-"))]
            topics = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
            responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
            configs = {}
            for response in responses:
                for _, _, _, topic, entries in response.resources:
                    configs[topic] = {entry[0]: entry[1] for entry in entries}
            return topics, configs
        finally:
            await admin.close()

    def app_topics():
        topics, configs = asyncio.run(describe())
        return (topics, configs) if any("changelog" in t for t in topics) else None

    topics, configs = wait_until(app_topics, 60, "the worker's topics and table changelogs")
    changelogs = [t for t in topics if t.endswith("-changelog")]
    assert {t.split("-", 2)[-1] for t in changelogs} >= {"aircraft-changelog",
                                                          "group-windows-changelog"}, changelogs
    for topic in changelogs:
        assert topics[topic] == 8 and configs[topic]["cleanup.policy"] == "compact", (topic, configs[topic])
    for base in (RAW, PROCESSED):
        topic = f"d{tag}-{base}"
        assert topics[topic] == 8 and configs[topic]["retention.ms"] == str(7 * 24 * 3600 * 1000), topic
    # The source polled the fake server and the worker scored what it got.
    wait_until(lambda: _scored(ports["6066"]), 120,
               "the worker to score the fake server's states")


def _scored(port: int) -> bool:
    from tests.harness import http_get

    status, _, body = http_get(f"http://127.0.0.1:{port}/model/")
    return status == 200 and body["scorer"]["events"] > 0


def test_the_image_is_built_from_a_wheel_that_carries_the_default_model(tmp_path):
    """The Dockerfile's steps, here: a wheel of the app (no dependencies), installed into another
    directory, runs from there (not from this checkout) and verifies and loads its default model."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = dockerfile.split("\nFROM ")
    final = stages[-1]
    assert final.startswith("python:3.11-slim"), final[:40]
    assert re.search(r"^USER flights$", final, flags=re.M) and "useradd" in final  # not root
    for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, flags=re.M):
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
    cmd = re.search(r'^CMD \["flights-app", "(\w+)"\]', final, flags=re.M)
    assert cmd and cmd.group(1) == "worker"

    # The build stage's context: exactly what its COPY lines bring (and .dockerignore lets through).
    source = tmp_path / "src"
    source.mkdir()
    build_stage = next(stage for stage in stages if " AS build" in stage.splitlines()[0])
    for line in re.findall(r"^COPY (?!--from)(.+)$", build_stage, flags=re.M):
        *items, _ = line.split()
        for item in items:
            if (ROOT / item).is_dir():
                shutil.copytree(ROOT / item, source / item, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(ROOT / item, source / item)
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "--wheel-dir", str(wheels), str(source)], capture_output=True, text=True, timeout=300,
                           cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    wheel = next(wheels.glob("flights_app-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"ml/models/default.joblib", "ml/models/default.npz", "ml/models/default.json",
            "flights_app/embedded/pom.xml", "flights_app/embedded/kafka-setup.sh", "flights_app/embedded/broker.py",
            "flights_app/fake_opensky/server.py", "agents/scoring.py",
            "web/dashboard/app.py", "web/dashboard/templates/login.html"} <= names, \
        sorted(n for n in names if not n.endswith(".py"))
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    probe = ("import flights_app, ml.model as m; from ml.registry import ModelRegistry; "
             "r = ModelRegistry(m.DEFAULT_MODEL); r.load_initial(); "
             "print(flights_app.__file__); print(m.DEFAULT_MODEL); print(r.current is not None)")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    package, model, loaded = run.stdout.split()
    assert package.startswith(str(target)) and model.startswith(str(target)), run.stdout
    assert loaded == "True"


@pytest.mark.kafka
def test_a_cluster_that_cannot_hold_the_topics_as_configured_stops_the_worker_with_one_line(kafka, tmp_path):
    """Replication above the broker count, and topics made earlier with another partition count (the
    tables are co-partitioned with them): the worker says what to change and exits, no traceback."""
    from tests.harness import TestApp

    first = TestApp(tmp_path, kafka.url)
    worker = first.start_worker()
    try:
        wait_until(lambda: worker.alive() and "Subscribed to topic(s)" in worker.log_text(), 120,
                   "the topics (4 partitions) and the consumer's subscription")
    finally:
        worker.stop()
    # The tables' changelogs are made with the other topics, before the consumer subscribes: made by
    # Faust just before, they can miss the consumer's metadata and the first assignment.
    log = worker.log_text()
    app_id = first.env["FLIGHTS_APP_ID"]
    made = log.index(f"Created topics {app_id}-aircraft-changelog, {app_id}-group-windows-changelog")
    assert made < log.index("Subscribed to topic(s)")
    for env, words in (
        ({"FLIGHTS_TOPIC_PARTITIONS": "8"}, "has 4 partitions but FLIGHTS_TOPIC_PARTITIONS=8"),
        ({"FLIGHTS_TOPIC_REPLICATION": "3", "FLIGHTS_TOPIC_PREFIX": first.prefix + "r3-"},
         "with FLIGHTS_TOPIC_REPLICATION=3"),
    ):
        again = first.start_worker(name=f"again-{len(words)}", **env)
        assert again.process.wait(120) != 0
        log = again.log_text()
        assert words in log and "Traceback" not in log, log[-2000:]


def image_properties(env: dict) -> dict[str, str]:
    """server.properties as the apache/kafka image makes it from KAFKA_* variables (its rule, as
    Confluent's images: drop the prefix, lower case, "___" -> "_", "__" -> "-", "_" -> ".")."""
    out = {}
    for key, value in env.items():
        if key.startswith("KAFKA_") and key not in ("KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_LOG4J_OPTS"):
            name = key[len("KAFKA_"):].lower().replace("___", "\0").replace("__", "-").replace("_", ".")
            out[name.replace("\0", "_")] = str(value)
    return out


def _local_secrets(value, secrets_dir: Path):
    return str(value).replace("/run/secrets", str(secrets_dir))  # where compose mounts them


@pytest.mark.kafka
def test_the_compose_files_secured_brokers_run_here_admit_only_their_principals_and_survive_one_loss(
        tmp_path, cleanup):
    """The three brokers' configuration from the compose file (host names and ports made local, the
    secrets of `make secrets`), run with the embedded broker's jars (the same Kafka version as the image):
    they form one KRaft cluster over mutual TLS; the compose file's kafka-setup command makes the SCRAM
    logins and the ACLs; the worker, logged in as the compose file logs it in (TLS, SCRAM), creates the
    app's topics with replication 3 and writes; the dashboard cannot write flight-raw-data; no login
    and a wrong password are refused. With one broker killed an acks=all write still succeeds (two in
    sync), with two killed it is refused (min.insync.replicas 2)."""
    import ssl

    from aiokafka.errors import KafkaError

    from flights_app import dev_secrets
    from flights_app.embedded.broker import PRINCIPALS, check_java, kafka_tools
    from flights_app.kafka_security import KafkaSecurity, login_problem
    from flights_app.topic_admin import ensure_topics
    from tests.conftest import KAFKA_LIB

    services = resolved()["services"]
    secrets_dir = tmp_path / "secrets"
    dev_secrets.write(secrets_dir)
    names = ("client", "controller", "internal")
    ports = {name: {n: free_port() for n in names} for name in BROKERS}
    java = check_java()
    brokers = {}
    for name in BROKERS:
        props = {k: _local_secrets(v, secrets_dir) for k, v in image_properties(services[name]["environment"]).items()}
        assert props.pop("listeners") == "CLIENT://:9092,CONTROLLER://:9093,INTERNAL://:9094"
        props["listeners"] = ",".join(f"{n.upper()}://127.0.0.1:{ports[name][n]}" for n in names)
        assert props["advertised.listeners"] == f"CLIENT://{name}:9092,INTERNAL://{name}:9094"
        props["advertised.listeners"] = ",".join(f"{n.upper()}://127.0.0.1:{ports[name][n]}"
                                                 for n in ("client", "internal"))
        props["controller.quorum.voters"] = ",".join(
            f"{n + 1}@127.0.0.1:{ports[b]['controller']}" for n, b in enumerate(BROKERS))
        props["log.dirs"] = str(tmp_path / name / "data")
        config = tmp_path / name / "server.properties"
        config.parent.mkdir()
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    classpath = ["-cp", f"{KAFKA_LIB}/*"]
    formatting = {name: subprocess.Popen([java, "-XX:TieredStopAtLevel=1", *classpath, "kafka.tools.StorageTool",
                                          "format", "-t", services[name]["environment"]["CLUSTER_ID"], "-c",
                                          str(tmp_path / name / "server.properties")],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                  for name in BROKERS}  # the three at once
    for name, formatter in formatting.items():
        output, _ = formatter.communicate(timeout=120)
        assert formatter.returncode == 0, output
        broker = Proc(name, [java, "-Xmx384m", "-Xms128m", *classpath, "kafka.Kafka",
                             str(tmp_path / name / "server.properties")],
                      {"PATH": "/usr/bin:/bin"}, tmp_path / f"{name}.log")
        cleanup.append(broker)
        brokers[name] = broker
    client = ",".join(f"127.0.0.1:{ports[b]['client']}" for b in BROKERS)
    internal = ",".join(f"127.0.0.1:{ports[b]['internal']}" for b in BROKERS)

    async def cluster_size() -> int:  # as the brokers see each other: mutual TLS, their certificate
        from aiokafka.admin import AIOKafkaAdminClient

        context = ssl.create_default_context(cafile=str(secrets_dir / dev_secrets.CA_FILE))
        context.load_cert_chain(str(secrets_dir / dev_secrets.BROKER_FILE))
        admin = AIOKafkaAdminClient(bootstrap_servers=internal, request_timeout_ms=5000, security_protocol="SSL",
                                    ssl_context=context)
        await admin.start()
        try:
            return len((await admin.describe_cluster())["brokers"])
        finally:
            await admin.close()

    def all_up() -> bool:
        for broker in brokers.values():
            assert broker.alive(), broker.tail()
        return asyncio.run(cluster_size()) == 3

    wait_until(all_up, 180, "the three brokers to form a cluster", interval_s=1)

    # The compose file's kafka-setup service: its command and environment, Kafka's tools from the jars.
    setup = services["kafka-setup"]
    env = {k: _local_secrets(v, secrets_dir) for k, v in setup["environment"].items()}
    env.update(PATH="/usr/bin:/bin", SETUP_BOOTSTRAP=internal,
               KAFKA_TOOLS=str(kafka_tools(tmp_path / "tools", KAFKA_LIB, tmp_path / "tools-log4j.properties")))
    script = ROOT / setup["volumes"][0].split(":")[0].removeprefix("./")
    assert setup["command"] == ["sh", "/kafka-setup.sh"]
    made = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    passwords = {u: (secrets_dir / f"kafka-{u}-password").read_text().strip() for u in PRINCIPALS}
    assert not any(p in made.stdout + made.stderr for p in passwords.values())

    def logged_in(service: str, **changes: str) -> KafkaSecurity:
        """The login of a compose service, from its own environment (secrets made local)."""
        env = {k: _local_secrets(v, secrets_dir) for k, v in services[service]["environment"].items()
               if k in KAFKA_LOGIN}
        return load_settings({**env, **changes}).kafka_security

    worker, dashboard = logged_in("worker"), logged_in("dashboard")
    assert worker.protocol == "SASL_SSL" and worker.user == "worker" and dashboard.user == "dashboard"
    (tmp_path / "wrong").write_text("not-the-password\n")

    async def write(security: KafkaSecurity, topic: str = RAW, timeout_ms: int = 15000) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=client, acks="all", request_timeout_ms=timeout_ms,
                                    **security.client_options())
        await producer.start()
        try:
            for partition in range(8):
                await producer.send_and_wait(topic, b"x", partition=partition)
        finally:
            await producer.stop()

    asyncio.run(ensure_topics(client, [RAW, PROCESSED], partitions=8, replication=3, retention_s=3600,
                              timeout_s=60, client_options=worker.client_options()))
    asyncio.run(write(worker))
    from aiokafka.errors import TopicAuthorizationFailedError

    with pytest.raises(TopicAuthorizationFailedError):  # the dashboard reads; it cannot forge states
        asyncio.run(write(dashboard))
    wrong = logged_in("worker", FLIGHTS_KAFKA_PASSWORD_FILE=str(tmp_path / "wrong"))
    assert "refused the login of 'worker'" in asyncio.run(login_problem(client, wrong))
    assert asyncio.run(login_problem(client, KafkaSecurity())) is not None  # plaintext, no login: refused

    brokers["kafka-3"].kill()
    wait_until(lambda: asyncio.run(write(worker)) is None, 120, "writes with one broker lost", interval_s=2)
    brokers["kafka-2"].kill()
    with pytest.raises(KafkaError):  # a timeout waiting for the replicas (no quorum left to shrink the ISR)
        asyncio.run(write(worker, timeout_ms=5000))
    # Alone, kafka-1 has lost its controller quorum (two of three voters gone): a clean stop would
    # wait 30 s for one that never comes, so it is killed like the others.
    brokers["kafka-1"].kill()
