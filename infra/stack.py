"""The local stack: broker, SMTP capture sink, worker and API as background processes.

Each service runs as `python -m infra.cli <service>` with its log in `<data_dir>/logs/` and its pid in
`<data_dir>/run/`. The same code starts the stack for `tidings stack up`, the demo and the tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog

from infra.kafka_broker import KafkaBroker, port_open
from infra.settings import Settings

log = structlog.get_logger(__name__)

SERVICES = ("mailsink", "worker", "api")


class StackError(RuntimeError):
    pass


def settings_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment that makes a child process build the same Settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        env[f"TIDINGS_{name.upper()}"] = str(value)
    env.update(extra or {})
    return env


@dataclass
class Service:
    name: str
    settings: Settings

    @property
    def pid_file(self) -> Path:
        return self.settings.data_dir / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.settings.data_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None

    def start(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        if env is not None:
            # A worker started with another prefix or id (a new consumer group) answers with its own app id.
            self.expected_app_id = (
                f"{env.get('TIDINGS_TOPIC_PREFIX', self.settings.topic_prefix)}."
                f"{env.get('TIDINGS_WORKER_ID', self.settings.worker_id)}"
            )
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "infra.cli", self.name],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env or settings_env(self.settings, {"TIDINGS_LOG_FORMAT": "json"}),
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        log.info("service.started", service=self.name, pid=proc.pid, log=str(self.log_file))
        return proc

    @property
    def address(self) -> tuple[str, int]:
        s = self.settings
        return {
            "mailsink": (s.mailsink_host, s.mailsink_port),
            "api": (s.api_host, s.api_port),
            "worker": (s.worker_host, s.worker_port),
        }[self.name]

    def ready(self) -> bool:
        host, port = self.address
        if self.name == "mailsink":
            return port_open(host, port)
        url = f"http://{host}:{port}/healthz" if self.name == "api" else f"http://{host}:{port}/healthz/"
        try:
            response = httpx.get(url, timeout=1.0)
        except httpx.HTTPError:
            return False
        if self.name == "worker":
            # Another stack's worker on the same port must not pass for ours.
            from processors.app import app_id

            expected = getattr(self, "expected_app_id", None) or app_id(self.settings)
            return response.status_code == 200 and response.json().get("app_id") == expected
        return response.status_code == 200

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            if self.pid() is None:
                raise StackError(f"{self.name} exited during start-up; see {self.log_file}:\n{tail(self.log_file)}")
            time.sleep(0.3)
        raise StackError(f"{self.name} not ready after {timeout:.0f}s; see {self.log_file}:\n{tail(self.log_file)}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        log.info("service.stopped", service=self.name, pid=pid, signal=signal.Signals(sig).name)
        return True


def _alive(pid: int) -> bool:
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class Stack:
    def __init__(self, settings: Settings, broker_settings: Settings | None = None) -> None:
        self.settings = settings
        # The broker may live under another data dir (the demo shares the developer's broker).
        self.broker = KafkaBroker(broker_settings or settings)
        self.services = {name: Service(name, settings) for name in SERVICES}

    def up(self, services: tuple[str, ...] = SERVICES, env: dict[str, str] | None = None) -> None:
        self.broker.start(wait=True)
        from connectors.kafka_admin import ensure_topics

        ensure_topics(self.settings)
        for name in services:
            service = self.services[name]
            if service.pid() is None or not service.ready():
                host, port = service.address
                if service.pid() is None and port_open(host, port):
                    raise StackError(
                        f"{name}: {host}:{port} is already in use by another process "
                        "(another stack? `tidings stack down`, or set its TIDINGS_*_PORT)"
                    )
                service.start(env)
            service.wait_ready()

    def down(self, stop_broker: bool = False) -> None:
        for name in reversed(SERVICES):
            self.services[name].stop()
        if stop_broker:
            self.broker.stop()

    def status(self) -> dict[str, str]:
        out = {"kafka": "ready" if self.broker.status().ready else "stopped"}
        for name, service in self.services.items():
            pid = service.pid()
            out[name] = f"ready (pid {pid})" if pid and service.ready() else (f"starting (pid {pid})" if pid else "stopped")
        return out
