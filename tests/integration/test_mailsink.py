from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import aiosmtplib
import pytest

from connectors.mailsink import INDEX_FILE, MailSink, list_messages
from domain.messages import build_message
from domain.templates import RenderedEmail

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def message(n: int, subject: str = "Hello") -> bytes:
    rendered = RenderedEmail(subject=f"{subject} {n}", preheader="", html=f"<p>message {n}</p>", text=f"message {n}\n")
    return build_message(
        rendered,
        intent_id=f"intent-{n}",
        mail_from="Demo <hello@news.tidings.test>",
        to=f"user{n}@example.com",
        sending_domain="news.tidings.test",
        date=datetime(2026, 11, 2, tzinfo=timezone.utc),
    )


async def send_all(port: int, count: int, connections: int = 4) -> None:
    async def worker(numbers: range) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="test") as client:
            for n in numbers:
                await client.sendmail("hello@news.tidings.test", [f"user{n}@example.com"], message(n))

    await asyncio.gather(*(worker(range(i, count, connections)) for i in range(connections)))


def test_captures_message_file_and_index_line(tmp_path: Path) -> None:
    with MailSink(tmp_path, port=0) as sink:
        assert sink.port != 0
        asyncio.run(send_all(sink.port, 1, connections=1))
    [captured] = list_messages(tmp_path)
    assert captured.mail_from == "hello@news.tidings.test"
    assert captured.rcpt_tos == ["user0@example.com"]
    assert captured.subject == "Hello 0"
    assert captured.message_id.endswith("@news.tidings.test>")
    assert captured.peer.startswith("127.0.0.1:")
    raw = captured.path_in(tmp_path).read_bytes()
    assert raw == message(0)
    assert captured.size == len(raw)
    line = json.loads((tmp_path / INDEX_FILE).read_text().splitlines()[0])
    assert set(line) >= {"file", "mail_from", "rcpt_tos", "message_id", "subject", "size", "received_at"}


def test_folded_non_ascii_subject_is_decoded_in_the_index(tmp_path: Path) -> None:
    subject = " ".join(["Grüße aus Köln"] * 8)
    with MailSink(tmp_path, port=0) as sink:
        raw = message(1, subject=subject)
        assert b"\r\n =?utf-8?b?" in raw  # long enough to be folded over several lines

        async def send() -> None:
            await aiosmtplib.send(raw, sender="a@news.tidings.test", recipients=["b@example.com"],
                                  hostname="127.0.0.1", port=sink.port, start_tls=False)

        asyncio.run(send())
    assert list_messages(tmp_path)[0].subject == f"{subject} 1"


@pytest.mark.timeout(60)
def test_keeps_up_with_thousands_of_messages(tmp_path: Path) -> None:
    count = 2000
    with MailSink(tmp_path, port=0) as sink:
        started = time.perf_counter()
        asyncio.run(send_all(sink.port, count, connections=8))
        elapsed = time.perf_counter() - started
    captured = list_messages(tmp_path)
    assert len(captured) == count
    assert len({c.file for c in captured}) == count
    assert sorted(c.rcpt_tos[0] for c in captured) == sorted(f"user{n}@example.com" for n in range(count))
    # Client and sink share this process and its GIL here; the sink alone is faster.
    assert count / elapsed > 200, f"only {count / elapsed:.0f} msg/s"


def test_list_messages_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert list_messages(tmp_path / "nothing-here") == []


def test_list_messages_ignores_a_line_still_being_written(tmp_path: Path) -> None:
    with MailSink(tmp_path, port=0) as sink:
        asyncio.run(send_all(sink.port, 2, connections=1))
    with (tmp_path / INDEX_FILE).open("a") as index:
        index.write('{"file": "partial')
    assert len(list_messages(tmp_path)) == 2


def test_stop_releases_the_port_and_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with MailSink(tmp_path / "a", port=0) as first:
        port = first.port
        with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{port}"):
            MailSink(tmp_path / "b", port=port).start()
    with MailSink(tmp_path / "c", port=port) as again:
        assert again.port == port


def test_stop_ends_open_client_sessions(tmp_path: Path) -> None:
    sink = MailSink(tmp_path, port=0)
    sink.start()
    client = socket.create_connection(("127.0.0.1", sink.port), timeout=5)
    assert client.recv(100).startswith(b"220")
    started = time.perf_counter()
    sink.stop()
    assert time.perf_counter() - started < 5
    assert client.recv(100) == b""  # the server closed our idle session
    client.close()


@pytest.mark.timeout(60)
def test_run_mailsink_serves_until_sigterm(tmp_path: Path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    env = dict(os.environ, TIDINGS_DATA_DIR=str(tmp_path), TIDINGS_MAILSINK_PORT=str(port), TIDINGS_MAILSINK_HOST="127.0.0.1")
    code = "from infra.settings import Settings; from connectors.mailsink import run_mailsink; run_mailsink(Settings())"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                assert time.monotonic() < deadline, "mail sink did not start"
                time.sleep(0.1)
        asyncio.run(send_all(port, 3, connections=1))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len(list_messages(tmp_path / "mailsink")) == 3
