"""A local single-node Apache Kafka broker (KRaft, combined mode) from Maven Central jars.

No Docker: `mvn dependency:copy-dependencies` on infra/kafka/pom.xml gives a classpath, storage is
formatted once, and the broker runs as a child process listening on loopback only. Its pid, log and
data live under `<data_dir>/kafka/`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import structlog

from infra.settings import Settings

log = structlog.get_logger(__name__)

POM = Path(__file__).parent / "kafka" / "pom.xml"
DEFAULT_LIB_DIR = Path(os.environ.get("TIDINGS_KAFKA_LIB", Path.home() / ".cache" / "tidings" / "kafka-lib"))

LOG4J_PROPERTIES = """\
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log_file}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
"""


class BrokerError(RuntimeError):
    pass


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    ready: bool
    pid: int | None
    bootstrap: str


def _host_port(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    host, _, port = first.rpartition(":")
    return host or "127.0.0.1", int(port)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class KafkaBroker:
    def __init__(self, settings: Settings, lib_dir: Path = DEFAULT_LIB_DIR) -> None:
        self.settings = settings
        self.lib_dir = lib_dir
        self.home = (settings.data_dir / "kafka").resolve()
        self.host, self.port = _host_port(settings.kafka_bootstrap)
        self.controller_port = self.port + 1

    # -- files -----------------------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.home / "data"

    def jars_present(self) -> bool:
        return self.lib_dir.is_dir() and any(self.lib_dir.glob("kafka_2.13-*.jar"))

    def fetch_jars(self) -> None:
        """Download the broker and its dependencies from Maven Central (once)."""
        if self.jars_present():
            return
        if shutil.which("mvn") is None:
            raise BrokerError("Maven (mvn) is needed to fetch the Kafka broker jars; install it (apt install maven)")
        self.lib_dir.mkdir(parents=True, exist_ok=True)
        log.info("kafka.jars_fetching", into=str(self.lib_dir))
        result = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={self.lib_dir}"],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0 or not self.jars_present():
            raise BrokerError(f"fetching Kafka jars failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        host = self.host
        self.properties_file.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers={host}:{self.controller_port}",
                    f"listeners=PLAINTEXT://{host}:{self.port},CONTROLLER://{host}:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://{host}:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.log_dirs}",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    f"num.partitions={self.settings.partitions}",
                    "auto.create.topics.enable=true",
                    "log.retention.hours=168",
                    "log.segment.bytes=67108864",
                    "",
                ]
            )
        )
        (self.home / "log4j.properties").write_text(LOG4J_PROPERTIES.format(log_file=self.log_file))

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        if java_home and Path(java_home, "bin", "java").exists():
            return str(Path(java_home, "bin", "java"))
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java 17+ is needed to run the Kafka broker")
        return java

    def _classpath(self) -> str:
        return f"{self.lib_dir}/*"

    def _format_storage(self) -> None:
        if (self.log_dirs / "meta.properties").exists():
            return
        cluster_id = uuid.uuid4().hex[:22]
        result = subprocess.run(
            [
                self._java(),
                "-cp",
                self._classpath(),
                f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(self.properties_file),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed: {result.stdout[-1500:]} {result.stderr[-1500:]}")

    # -- lifecycle -------------------------------------------------------------
    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def status(self) -> BrokerStatus:
        pid = self._pid()
        ready = port_open(self.host, self.port)
        return BrokerStatus(running=pid is not None or ready, ready=ready, pid=pid, bootstrap=self.settings.kafka_bootstrap)

    def start(self, wait: bool = True, timeout: float = 90.0) -> BrokerStatus:
        """Start the broker unless one answers already; concurrent callers start one between them."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            pid = self._pid()
            if port_open(self.host, self.port) or pid is not None:
                log.info("kafka.already_running", bootstrap=self.settings.kafka_bootstrap, pid=pid)
                if wait:
                    self.wait_ready(timeout)
                return self.status()
            return self._start_locked(wait, timeout)

    def _start_locked(self, wait: bool, timeout: float) -> BrokerStatus:
        self.fetch_jars()
        self._write_config()
        self._format_storage()
        heap = os.environ.get("TIDINGS_KAFKA_HEAP", "1g")
        with open(self.home / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                [
                    self._java(),
                    f"-Xms{heap}",
                    f"-Xmx{heap}",
                    "-XX:+UseG1GC",
                    "-XX:MaxGCPauseMillis=20",
                    "-Djava.awt.headless=true",
                    f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
                    "-cp",
                    self._classpath(),
                    "kafka.Kafka",
                    str(self.properties_file),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        log.info("kafka.starting", pid=proc.pid, bootstrap=self.settings.kafka_bootstrap)
        if wait:
            self.wait_ready(timeout, proc)
        return self.status()

    def wait_ready(self, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(f"Kafka broker exited with {proc.returncode}; see {self.home / 'stdout.log'}")
            if port_open(self.host, self.port):
                try:
                    metadata = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap}).list_topics(timeout=3)
                    if metadata.brokers:
                        log.info("kafka.ready", bootstrap=self.settings.kafka_bootstrap)
                        return
                except Exception:  # not ready yet: keep polling until the deadline
                    pass
            time.sleep(0.3)
        raise BrokerError(f"Kafka broker not ready after {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> bool:
        pid = self._pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        log.info("kafka.stopped", pid=pid)
        return True
