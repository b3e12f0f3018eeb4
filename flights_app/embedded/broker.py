"""A single-node Apache Kafka broker (KRaft) that the project runs itself.

The jars come from Maven Central through ``pom.xml`` beside this file; the
broker's storage is formatted once under its data directory, so topics survive
a restart. It binds 127.0.0.1 unless told otherwise, its log goes to a file,
and it dies with the process that started it.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

POM = Path(__file__).with_name("pom.xml")
KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
#: Kafka's command-line tools that kafka-setup.sh calls, by their names in Kafka's bin/ directory.
TOOLS = {"kafka-acls.sh": "kafka.admin.AclCommand", "kafka-configs.sh": "kafka.admin.ConfigCommand"}
#: The principals and ACLs of a deployment (docker-compose.yml's kafka-setup service runs it too).
SETUP_SCRIPT = Path(__file__).with_name("kafka-setup.sh")
#: The principals of a SASL broker: the administrator (a super user: ACLs, the broker's own
#: connections), the worker (the source and every stage) and the dashboard (reads the outputs).
PRINCIPALS = ("admin", "worker", "dashboard")
MECHANISM = "SCRAM-SHA-512"
READY_LINE = "Kafka Server started"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1


class BrokerError(RuntimeError):
    """The embedded broker could not be set up or started; the message says what to do."""


def kafka_jars_present(lib_dir: Path) -> bool:
    return any(lib_dir.glob("kafka_2.13-*.jar"))


def ensure_kafka_jars(lib_dir: Path) -> None:
    """Resolve Kafka and its runtime dependencies into ``lib_dir`` with Maven, once."""
    if kafka_jars_present(lib_dir):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"the embedded Kafka's jars are not in {lib_dir} and Maven is not installed: "
            "install Maven (Debian: apt-get install maven) and run `make install`"
        )
    log.warning("Resolving Apache Kafka's jars with Maven into %s (first run only)...", lib_dir)
    lib_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        f"-DoutputDirectory={lib_dir}", "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not kafka_jars_present(lib_dir):
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise BrokerError(f"Maven could not resolve Kafka's jars into {lib_dir}:\n{tail}")


def check_java() -> str:
    """Return the java executable, or explain what to install."""
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            "Java is not installed, and the embedded Kafka broker needs Java 11 or newer: "
            "install a JDK (Debian: apt-get install openjdk-17-jre-headless), "
            "or point FLIGHTS_BROKER at a running Kafka"
        )
    return java


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def accepts_connections(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka avoids these: they look like flags
            return cluster_id


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, so no broker is left orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the parent's stop() still ends it
        pass


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def _without_secrets(text: str) -> str:
    """A tool's output with anything that looks like a password blanked."""
    import re
    return re.sub(r"(password\s*=\s*)(\"[^\"]*\"|\S+)", r"\1***", text)


def _scram_login(user: str, password: str) -> str:
    """A JAAS line logging ``user`` in with SCRAM (Kafka's configs for the broker and its tools)."""
    return f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{password}";'


def kafka_tools(directory: Path, lib_dir: Path, log4j: Path) -> Path:
    """Kafka's command-line tools of ``TOOLS`` as small scripts in ``directory`` running the jars of
    ``lib_dir`` (a short-lived JVM each: the client compiler only, the serial collector)."""
    directory.mkdir(parents=True, exist_ok=True)
    java = check_java()
    for name, main in TOOLS.items():
        script = directory / name
        script.write_text(f"#!/bin/sh\nexec '{java}' -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "
                          f"-Dlog4j.configuration=file:'{log4j}' -cp '{lib_dir}/*' {main} \"$@\"\n")
        script.chmod(0o755)
    return directory


class EmbeddedBroker:
    """One Kafka process in combined broker+controller mode on ``host:port``.

    The controller listens on ``controller_port`` (default ``port + 1``).
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 9092,
        *,
        controller_port: int | None = None,
        host: str = "127.0.0.1",
        heap_mb: int = 512,
        lib_dir: Path,
        partitions: int = 4,
        sasl: bool = False,
    ):
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.controller_port = controller_port or port + 1
        self.host = host
        self.heap_mb = heap_mb
        self.lib_dir = Path(lib_dir).absolute()
        self.partitions = partitions
        self.sasl = sasl
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def users_dir(self) -> Path:
        """With SASL: one file per principal holding its password (owner-only)."""
        return self.data_dir / "users"

    def password_file(self, principal: str) -> Path:
        return self.users_dir / principal

    def _listener_lines(self) -> list[str]:
        h, p, c = self.host, self.port, self.controller_port
        if not self.sasl:
            return [f"listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
                    f"advertised.listeners=PLAINTEXT://{h}:{p}",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT"]
        admin = self.password_file("admin").read_text().strip()
        return [f"listeners=SASL_PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
                f"advertised.listeners=SASL_PLAINTEXT://{h}:{p}",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
                "inter.broker.listener.name=SASL_PLAINTEXT",
                f"sasl.enabled.mechanisms={MECHANISM}",
                f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
                f"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={_scram_login('admin', admin)}",
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                # The broker's own connection to its controller (loopback, the controller listener) is anonymous.
                "super.users=User:admin;User:ANONYMOUS",
                "allow.everyone.if.no.acl.found=false"]

    def _properties(self) -> str:
        h, c = self.host, self.controller_port
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{h}:{c}",
            *self._listener_lines(),
            "controller.listener.names=CONTROLLER",
            f"log.dirs={self.log_dir}",
            f"num.partitions={self.partitions}",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            # Bounded disk: a week of data, in segments small enough to be deleted.
            "log.retention.hours=168",
            "log.segment.bytes=67108864",
            "log.cleaner.enable=true",
            "log.retention.check.interval.ms=60000",  # a short FLIGHTS_RETENTION_HOURS applies within a minute
            "",
        ])

    def _log4j(self) -> str:
        return "\n".join([
            "log4j.rootLogger=INFO, file",
            "log4j.appender.file=org.apache.log4j.RollingFileAppender",
            f"log4j.appender.file.File={self.log_file}",
            "log4j.appender.file.MaxFileSize=20MB",
            "log4j.appender.file.MaxBackupIndex=2",
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
            "log4j.logger.kafka.request.logger=WARN",
            "log4j.logger.state.change.logger=WARN",
            "",
        ])

    def _java(self, java: str, main: str, *args: str, heap: bool = False) -> list[str]:
        jvm = ["-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}"]
        if heap:
            jvm += [f"-Xmx{self.heap_mb}m", f"-Xms{min(self.heap_mb, 256)}m"]
        return [java, *jvm, "-cp", str(self.lib_dir / "*"), main, *args]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the broker and return once it accepts clients; raise BrokerError if not."""
        java = check_java()
        ensure_kafka_jars(self.lib_dir)
        for port in (self.port, self.controller_port):
            if not port_is_free(self.host, port):
                raise BrokerError(
                    f"port {port} on {self.host} is already in use, so the embedded Kafka "
                    "cannot start there: stop what uses it, or choose another port "
                    "(flights-app broker --port N, or FLIGHTS_EMBEDDED_BROKER_PORT)"
                )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        formatted = (self.log_dir / "meta.properties").exists()
        if self.sasl:
            self._ensure_passwords(formatted)
        config = self.data_dir / "server.properties"
        _write_private(config, self._properties())  # holds the admin's password with SASL
        (self.data_dir / "log4j.properties").write_text(self._log4j())
        if not formatted:
            self._format(java, config)
        start_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        stdout = open(self.data_dir / "stdout.log", "ab")
        self.process = subprocess.Popen(
            self._java(java, KAFKA_MAIN, str(config), heap=True),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            preexec_fn=_die_with_parent,
        )
        stdout.close()
        self._wait_ready(start_offset, timeout_s)
        log.info("Embedded Kafka ready on %s (data in %s)", self.bootstrap, self.data_dir)

    def _ensure_passwords(self, formatted: bool) -> None:
        """The principals' passwords, made with the storage (SCRAM users are created when it is formatted)."""
        if self.users_dir.exists():
            return
        if formatted:
            raise BrokerError(f"the embedded Kafka's data in {self.data_dir} was made without SASL users: "
                              "start it with SASL in a new FLIGHTS_DATADIR (or without FLIGHTS_EMBEDDED_BROKER_SASL)")
        self.users_dir.mkdir(mode=0o700, parents=True)
        for principal in PRINCIPALS:
            _write_private(self.password_file(principal), secrets.token_urlsafe(24) + "\n")

    def _format(self, java: str, config: Path) -> None:
        scram = [a for principal in (PRINCIPALS if self.sasl else ()) for a in (
            "--add-scram",
            f"{MECHANISM}=[name={principal},password={self.password_file(principal).read_text().strip()}]")]
        cmd = self._java(java, STORAGE_TOOL, "format", "-t", new_cluster_id(), "-c", str(config), *scram)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed: {_without_secrets(result.stdout + result.stderr)}")

    def client_properties(self, principal: str) -> Path:
        """A Kafka client config file logging ``principal`` in (for Kafka's own command-line tools)."""
        path = self.data_dir / f"{principal}.properties"
        password = self.password_file(principal).read_text().strip()
        _write_private(path, "\n".join(["security.protocol=SASL_PLAINTEXT", f"sasl.mechanism={MECHANISM}",
                                         f"sasl.jaas.config={_scram_login(principal, password)}", ""]))
        return path

    def login_settings(self, principal: str) -> dict[str, str]:
        """The app's settings that log a service in to this (SASL) broker as ``principal``."""
        return {"FLIGHTS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "FLIGHTS_KAFKA_SASL_MECHANISM": MECHANISM,
                "FLIGHTS_KAFKA_USER": principal, "FLIGHTS_KAFKA_PASSWORD_FILE": str(self.password_file(principal))}

    def grant(self, app_id: str, topic_prefix: str) -> None:
        """The ACLs of one app on a SASL broker, as ``kafka-setup.sh`` gives them in the compose cluster:
        the worker owns the app's topics and its consumer group and may create topics; the dashboard
        reads the output topics and nothing else; anyone else (and no login) gets nothing."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KAFKA_TOOLS": str(self.data_dir / "bin"),
               "SETUP_BOOTSTRAP": self.bootstrap, "SETUP_CONFIG": str(self.client_properties("admin")),
               "FLIGHTS_APP_ID": app_id, "FLIGHTS_TOPIC_PREFIX": topic_prefix}
        kafka_tools(self.data_dir / "bin", self.lib_dir, self.data_dir / "log4j.properties")
        result = subprocess.run(["sh", str(SETUP_SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise BrokerError("adding Kafka ACLs failed: "
                              f"{_without_secrets(result.stdout + result.stderr)[-2000:]}")

    def _wait_ready(self, log_offset: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(
                    f"the embedded Kafka exited with code {self.process.returncode}; "
                    f"last lines of {self.log_file}:\n{self._log_tail()}"
                )
            if self._logged_since(log_offset, READY_LINE) and accepts_connections(self.host, self.port):
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"the embedded Kafka did not start within {timeout_s:.0f} s:\n{self._log_tail()}")

    def _logged_since(self, offset: int, text: str) -> bool:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(offset)
                return text.encode() in f.read()
        except FileNotFoundError:
            return False

    def _log_tail(self, lines: int = 20) -> str:
        for path in (self.log_file, self.data_dir / "stdout.log"):
            if path.exists():
                text = path.read_text(errors="replace").strip().splitlines()
                if text:
                    return "\n".join(text[-lines:])
        return "(no log)"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop cleanly (SIGTERM: the broker flushes and closes its logs), then kill if stuck."""
        if not self.running:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("Embedded Kafka did not stop within %.0f s; killing it", timeout_s)
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Kill -9, as a crash would: for fault tests."""
        if self.running:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
