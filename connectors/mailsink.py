"""The local capture SMTP server: accepts everything, stores each message as an `.eml` file.

`directory/index.jsonl` gets one JSON line per message (appended, flushed, not fsynced: this is a
development sink and must keep up with the sender), so listing never has to parse the messages.
The server runs on its own event loop in a daemon thread, so it can be used from sync code,
from tests, and from `tidings mailsink` alike.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from email.header import decode_header, make_header
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP as SMTPServerProtocol
from aiosmtpd.smtp import Envelope, Session
from pydantic import BaseModel

from infra.settings import Settings

log = structlog.get_logger(__name__)

INDEX_FILE = "index.jsonl"


class CapturedMessage(BaseModel):
    file: str
    mail_from: str
    rcpt_tos: list[str]
    message_id: str
    subject: str
    size: int
    received_at: datetime
    peer: str = ""

    def path_in(self, directory: Path) -> Path:
        return directory / self.file


def list_messages(directory: Path) -> list[CapturedMessage]:
    """Every message the sink in `directory` captured, oldest first."""
    index = Path(directory) / INDEX_FILE
    if not index.exists():
        return []
    messages = []
    with index.open("rb") as lines:
        for line in lines:
            if not line.endswith(b"\n"):
                break  # a line still being written
            messages.append(CapturedMessage.model_validate_json(line))
    return messages


class _CaptureHandler:
    """aiosmtpd handler: write the message, append its index line, then answer 250.

    Creating a file is the slow part (hundreds of µs on a virtual disk). It runs on one writer
    thread, so the event loop keeps serving the other connections meanwhile, while the 250 still
    means "on disk and listed"; one thread also keeps index lines in acceptance order.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.index = (directory / INDEX_FILE).open("a", encoding="utf-8")
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailsink-writer")
        self.prefix = uuid.uuid4().hex[:8]
        self.count = 0

    async def handle_DATA(self, server: SMTPServerProtocol, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content: bytes = envelope.original_content or envelope.content or b""
        received_at = datetime.now(timezone.utc)
        self.count += 1
        name = f"{received_at:%Y%m%dT%H%M%S%f}-{self.prefix}-{self.count:07d}.eml"
        headers = _headers_of(content)
        peer = session.peer
        entry = {
            "file": name,
            "mail_from": envelope.mail_from or "",
            "rcpt_tos": list(envelope.rcpt_tos),
            "message_id": headers.get("message-id", ""),
            "subject": _decoded(headers.get("subject")),
            "size": len(content),
            "received_at": received_at.isoformat(),
            "peer": f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or ""),
        }
        try:
            await asyncio.get_running_loop().run_in_executor(self.writer, self._store, name, content, entry)
        except OSError as exc:
            log.error("mailsink.store_failed", file=name, error=str(exc))
            return "451 4.3.0 Cannot store the message right now"
        return "250 2.0.0 Ok: captured as " + name

    def _store(self, name: str, content: bytes, entry: dict[str, Any]) -> None:
        (self.directory / name).write_bytes(content)
        self.index.write(json.dumps(entry) + "\n")
        self.index.flush()

    def close(self) -> None:
        self.writer.shutdown(wait=True)
        self.index.close()


_INDEXED_HEADER = re.compile(rb"^(subject|message-id):[ \t]*(.*(?:\r?\n[ \t].*)*)", re.I | re.M)
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def _headers_of(content: bytes) -> dict[str, str]:
    """Subject and Message-ID, unfolded; a regex over the header block (the email package is
    several times slower, and the sink only needs these two)."""
    end = content.find(b"\r\n\r\n")
    head = content if end < 0 else content[:end]
    found: dict[str, str] = {}
    for match in _INDEXED_HEADER.finditer(head):
        name = match.group(1).decode("ascii").lower()
        found.setdefault(name, _FOLD.sub(b"", match.group(2)).strip().decode("utf-8", "replace"))
    return found


def _decoded(raw: str | None) -> str:
    if not raw:
        return ""
    if "=?" not in raw:
        return raw
    try:
        return str(make_header(decode_header(raw)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return raw


class MailSink:
    """`with MailSink(dir, port=0) as sink:` runs the sink; `sink.port` is the bound port."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 2525) -> None:
        self.directory = Path(directory)
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._handler: _CaptureHandler | None = None
        self._startup_error: BaseException | None = None

    @property
    def captured(self) -> int:
        """Messages captured since start."""
        return self._handler.count if self._handler else 0

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            raise RuntimeError("mail sink already started")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._handler = _CaptureHandler(self.directory)
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="tidings-mailsink", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"mail sink did not start within {timeout}s")
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            self._handler.close()
            raise RuntimeError(f"mail sink cannot listen on {self.host}:{self.port}: {self._startup_error}") from self._startup_error
        log.info("mailsink.started", host=self.host, port=self.port, directory=str(self.directory))

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._shutdown(), loop=self._loop))
        self._thread.join(timeout=10)
        self._thread = None
        if self._handler is not None:
            self._handler.close()
        log.info("mailsink.stopped", captured=self.captured)

    def __enter__(self) -> MailSink:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None and self._handler is not None
        asyncio.set_event_loop(loop)
        handler = self._handler
        try:
            self._server = loop.run_until_complete(
                loop.create_server(
                    lambda: SMTPServerProtocol(handler, hostname="tidings-mailsink", enable_SMTPUTF8=True, loop=loop),
                    host=self.host,
                    port=self.port,
                )
            )
        except OSError as exc:
            self._startup_error = exc
            ready.set()
            loop.close()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None and self._loop is not None
        self._server.close()
        # Open client sessions would keep their tasks alive; end them before stopping the loop.
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop.stop()


def run_mailsink(settings: Settings) -> None:
    """Run the sink in the foreground until SIGINT or SIGTERM."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with MailSink(settings.mailsink_dir, settings.mailsink_host, settings.mailsink_port):
            while not stop.wait(1.0):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
