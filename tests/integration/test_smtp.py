"""SmtpPool against real servers: the capture sink, Postfix's smtp-sink, and a scripted server."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.mailsink import MailSink, list_messages
from connectors.smtp import SmtpPool, parse_smtp_url
from domain.messages import build_message
from domain.smtp_replies import Accepted, Ambiguous, Bounced, Deferred
from domain.templates import RenderedEmail

pytestmark = pytest.mark.integration

SENDER = "hello@news.tidings.test"


def message(n: int) -> bytes:
    rendered = RenderedEmail(
        subject=f"Message {n} ✓",
        preheader="preview",
        html=f"<p>Hello {n}</p>\n.a line starting with a dot\n",
        text=f"Hello {n}\n.a line starting with a dot\n",
    )
    return build_message(
        rendered,
        intent_id=f"intent-{n}",
        mail_from=f"Demo <{SENDER}>",
        to=f"user{n}@example.com",
        sending_domain="news.tidings.test",
        date=datetime(2026, 11, 2, tzinfo=timezone.utc),
        unsubscribe_url=f"https://tidings.test/u/{n}",
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- against the capture sink -----------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_pool_delivers_200_messages_to_the_sink_over_reused_connections(tmp_path: Path) -> None:
    with MailSink(tmp_path, port=0) as sink:
        async with SmtpPool(f"smtp://127.0.0.1:{sink.port}", size=8, timeout=10) as pool:
            outcomes = await asyncio.gather(*(pool.send(SENDER, f"user{n}@example.com", message(n)) for n in range(200)))
            opened = pool.connections_opened
    assert all(isinstance(o, Accepted) and o.code == 250 for o in outcomes)
    captured = list_messages(tmp_path)
    assert len(captured) == 200
    assert opened <= 8
    assert len({c.peer for c in captured}) <= 8  # the sink saw at most 8 client connections
    for item in captured:
        n = int(item.rcpt_tos[0].removeprefix("user").split("@")[0])
        assert item.mail_from == SENDER
        assert item.path_in(tmp_path).read_bytes() == message(n)  # dot-stuffing undone, bytes intact


# -- against Postfix's smtp-sink --------------------------------------------------------------


@pytest.fixture
def postfix_smtp_sink() -> Iterator[int]:
    binary = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None)
    if binary is None:
        pytest.fail("Postfix's smtp-sink is missing: apt-get install postfix")
    port = free_port()
    process = subprocess.Popen(
        [binary, "-u", "root", f"127.0.0.1:{port}", "100"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, f"smtp-sink exited: {process.stderr.read() if process.stderr else ''}"
                assert time.monotonic() < deadline, "smtp-sink did not start"
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.timeout(60)
async def test_pool_delivers_500_messages_to_postfix_smtp_sink(postfix_smtp_sink: int) -> None:
    messages = [message(n) for n in range(500)]
    async with SmtpPool(f"smtp://127.0.0.1:{postfix_smtp_sink}", size=8, timeout=10) as pool:
        outcomes = await asyncio.gather(
            *(pool.send(SENDER, f"user{n}@example.com", raw) for n, raw in enumerate(messages))
        )
        assert pool.connections_opened <= 8
    assert [type(o) for o in outcomes] == [Accepted] * 500
    assert {o.code for o in outcomes} == {250}


# -- against a scripted server ----------------------------------------------------------------

RCPT_REPLIES = {
    "r421": "421 4.3.2 Service shutting down",
    "r450": "450 Requested mail action not taken: mailbox busy",
    "r451": "451 4.7.1 Greylisted, try again later",
    "r452": "452 Insufficient system storage",
    "r550": "550 5.1.1 User unknown",
    "r552": "552 Requested mail action aborted: exceeded storage allocation",
    "r554": "554 5.7.1 Client host blocked",
}
FINAL_REPLIES = {"d451": "451 4.3.0 Temporary failure", "d554": "554 5.7.1 Message rejected as spam"}


@dataclass
class Scripted:
    port: int
    connections: int = 0
    commands: list[str] = field(default_factory=list)
    received: dict[str, bytes] = field(default_factory=dict)


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    """An SMTP server in raw asyncio streams whose replies depend on the recipient's local part."""
    state = Scripted(port=0)
    writers: set[asyncio.StreamWriter] = set()

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        writers.add(writer)

        def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        recipient = ""
        drop_next_mail = False
        try:
            reply("220 scripted.test ESMTP")
            while line := await reader.readline():
                command = line.decode().strip()
                verb = command.split(" ", 1)[0].upper()
                state.commands.append(verb)
                if verb in ("EHLO", "HELO"):
                    reply("250-scripted.test")
                    reply("250 8BITMIME")
                elif verb == "MAIL" and drop_next_mail:
                    break  # the server gave up on this idle session just as the client reused it
                elif verb in ("MAIL", "RSET", "NOOP"):
                    recipient = ""
                    reply("250 2.0.0 Ok")
                elif verb == "RCPT":
                    recipient = command.split("<", 1)[1].split("@", 1)[0]
                    if recipient == "hang-rcpt":
                        await asyncio.sleep(30)
                    reply(RCPT_REPLIES.get(recipient, "250 2.1.5 Ok"))
                    if recipient == "r421":
                        break
                elif verb == "DATA":
                    if recipient == "drop-at-data":
                        break
                    reply("354 End data with <CR><LF>.<CR><LF>")
                    content = b""
                    while (chunk := await reader.readline()) not in (b".\r\n", b""):
                        content += chunk
                    state.received[recipient] = content
                    if recipient == "drop-after-data":
                        break  # the RFC 1047 window: content received, no reply
                    if recipient == "hang-after-data":
                        await asyncio.sleep(30)
                    reply(FINAL_REPLIES.get(recipient, "250 2.0.0 Ok: queued"))
                    drop_next_mail = recipient == "drop-next-mail"
                    if recipient == "close-after":
                        await writer.drain()
                        break  # closes the connection the client will pool
                elif verb == "QUIT":
                    reply("221 Bye")
                    break
                else:
                    reply("502 5.5.2 Command not recognized")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    yield state
    server.close()
    for writer in list(writers):
        writer.close()
    await server.wait_closed()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "local, expected",
    [
        ("ok", Accepted(250, "2.0.0 Ok: queued")),
        ("r421", Deferred(421, "4.3.2", "4.3.2 Service shutting down")),
        ("r450", Deferred(450, "", "Requested mail action not taken: mailbox busy")),
        ("r451", Deferred(451, "4.7.1", "4.7.1 Greylisted, try again later")),
        ("r452", Deferred(452, "", "Insufficient system storage")),
        ("d451", Deferred(451, "4.3.0", "4.3.0 Temporary failure")),
    ],
)
async def test_replies_map_to_outcomes(scripted: Scripted, local: str, expected: object) -> None:
    async with SmtpPool(f"smtp://127.0.0.1:{scripted.port}", size=1, timeout=5) as pool:
        assert await pool.send(SENDER, f"{local}@example.com", message(1)) == expected


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "local, code, enhanced, hard",
    [("r550", 550, "5.1.1", True), ("r552", 552, "", False), ("r554", 554, "5.7.1", False), ("d554", 554, "5.7.1", False)],
)
async def test_rejections_are_bounces(scripted: Scripted, local: str, code: int, enhanced: str, hard: bool) -> None:
    async with SmtpPool(f"smtp://127.0.0.1:{scripted.port}", size=1, timeout=5) as pool:
        outcome = await pool.send(SENDER, f"{local}@example.com", message(1))
    assert isinstance(outcome, Bounced)
    assert (outcome.code, outcome.enhanced, outcome.hard) == (code, enhanced, hard)
    assert outcome.reason


@pytest.mark.timeout(30)
async def test_connection_dropped_after_data_content_is_ambiguous(scripted: Scripted) -> None:
    async with SmtpPool(f"smtp://127.0.0.1:{scripted.port}", size=1, timeout=5) as pool:
        outcome = await pool.send(SENDER, "drop-after-data@example.com", message(7))
        assert isinstance(outcome, Ambiguous)
        assert "RFC 1047" in outcome.detail
        assert b"Hello 7" in scripted.received["drop-after-data"]  # the server did get it
        # The pool recovers with a fresh connection.
        assert isinstance(await pool.send(SENDER, "ok@example.com", message(8)), Accepted)


@pytest.mark.timeout(30)
async def test_no_reply_after_data_content_times_out_as_ambiguous(scripted: Scripted) -> None:
    async with SmtpPool(f"smtp://127.0.0.1:{scripted.port}", size=1, timeout=0.5) as pool:
        outcome = await pool.send(SENDER, "hang-after-data@example.com", message(1))
    assert isinstance(outcome, Ambiguous)


@pytest.mark.timeout(30)
async def test_failures_before_the_content_is_sent_are_deferred(scripted: Scripted) -> None:
    async with SmtpPool(f"smtp://127.0.0.1:{scripted.port}", size=1, timeout=0.5) as pool:
        dropped = await pool.send(SENDER, "drop-at-data@example.com", message(1))
        hung = await pool.send(SENDER, "hang-rcpt@example.com", message(2))
    assert isinstance(dropped, Deferred) and dropped.code == 0
    assert isinstance(hung, Deferred) and hung.code == 0
    assert "drop-at-data" not in scripted.received


@pytest.mark.timeout(30)
async def test_connection_refused_is_deferred() -> None:
    async with SmtpPool(f"smtp://127.0.0.1:{free_port()}", size=2, timeout=5) as pool:
        outcome = await pool.send(SENDER, "ada@example.com", message(1))
    assert isinstance(outcome, Deferred)
    assert outcome.code == 0
    assert outcome.message.startswith("connection refused")


@pytest.mark.timeout(30)
async def test_one_connection_serves_rejections_and_acceptances_with_rset(scripted: Scripted) -> None:
    sequence = ["r550", "ok", "r451", "d554", "ok", "r552", "ok"]
    async with SmtpPool(f"smtp://127.0.0.1:{scripted.port}", size=1, timeout=5) as pool:
        outcomes = [await pool.send(SENDER, f"{local}@example.com", message(i)) for i, local in enumerate(sequence)]
    assert [type(o) for o in outcomes] == [Bounced, Accepted, Deferred, Bounced, Accepted, Bounced, Accepted]
    assert scripted.connections == 1
    assert scripted.commands.count("RSET") == 3  # after each failed transaction, before the next MAIL


@pytest.mark.timeout(30)
async def test_421_closes_the_connection_and_the_next_send_reconnects(scripted: Scripted) -> None:
    async with SmtpPool(f"smtp://127.0.0.1:{scripted.port}", size=1, timeout=5) as pool:
        assert isinstance(await pool.send(SENDER, "r421@example.com", message(1)), Deferred)
        assert isinstance(await pool.send(SENDER, "ok@example.com", message(2)), Accepted)
    assert scripted.connections == 2


@pytest.mark.timeout(30)
async def test_pooled_connection_closed_by_the_server_is_replaced_before_mail_from(scripted: Scripted) -> None:
    async with SmtpPool(f"smtp://127.0.0.1:{scripted.port}", size=1, timeout=5) as pool:
        for n in range(3):
            assert isinstance(await pool.send(SENDER, "close-after@example.com", message(n)), Accepted)
    assert scripted.connections == 3
    assert scripted.commands.count("DATA") == 3  # each message sent exactly once


@pytest.mark.timeout(30)
async def test_pooled_connection_dying_at_mail_from_is_retried_on_a_new_one(scripted: Scripted) -> None:
    async with SmtpPool(f"smtp://127.0.0.1:{scripted.port}", size=1, timeout=5) as pool:
        assert isinstance(await pool.send(SENDER, "drop-next-mail@example.com", message(1)), Accepted)
        assert isinstance(await pool.send(SENDER, "ok@example.com", message(2)), Accepted)
    assert scripted.connections == 2
    assert scripted.commands.count("MAIL") == 3  # accepted, dropped, accepted on the new connection
    assert scripted.commands.count("DATA") == 2


@pytest.mark.timeout(30)
async def test_recipient_with_control_characters_is_refused_without_a_connection(scripted: Scripted) -> None:
    async with SmtpPool(f"smtp://127.0.0.1:{scripted.port}", size=1, timeout=5) as pool:
        outcome = await pool.send(SENDER, "ok@example.com\r\nRCPT TO:<eve@evil.test>", message(1))
    assert isinstance(outcome, Bounced) and outcome.hard
    assert scripted.connections == 0


@pytest.mark.parametrize(
    "url, host, port, tls, starttls, user",
    [
        ("smtp://127.0.0.1:2525", "127.0.0.1", 2525, False, False, None),
        ("smtp://mx.example.com", "mx.example.com", 25, False, False, None),
        ("smtp+starttls://u%40x:p%3Aw@relay.test:587", "relay.test", 587, False, True, "u@x"),
        ("smtps://u:p@relay.test", "relay.test", 465, True, False, "u"),
    ],
)
def test_smtp_urls_are_parsed(url: str, host: str, port: int, tls: bool, starttls: bool, user: str | None) -> None:
    target = parse_smtp_url(url)
    assert (target.host, target.port, target.use_tls, target.start_tls, target.username) == (host, port, tls, starttls, user)


@pytest.mark.parametrize("url, problem", [("http://x:25", "scheme"), ("smtp://", "no host"), ("smtp://x:notaport", "bad port")])
def test_bad_smtp_urls_are_rejected(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_smtp_url(url)
