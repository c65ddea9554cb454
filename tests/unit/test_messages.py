from __future__ import annotations

import email
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage

import pytest

from domain.messages import (
    HeaderInjectionError,
    InvalidAddressError,
    MessageError,
    build_message,
    message_id_for,
)
from domain.templates import RenderedEmail

WHEN = datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc)
RENDERED = RenderedEmail(
    subject="Welcome, Ada!",
    preheader="Three things to try first",
    html="<html><body><h1>Hi Ada</h1><p>Read <a href='https://x.test/g'>the guide</a>.</p></body></html>",
    text="Hi Ada\n\nRead the guide (https://x.test/g).\n",
)


def build(rendered: RenderedEmail = RENDERED, **overrides: object) -> bytes:
    arguments: dict[str, object] = dict(
        intent_id="intent-1",
        mail_from="Tidings Demo <hello@news.tidings.test>",
        to="ada@example.com",
        sending_domain="news.tidings.test",
        date=WHEN,
        unsubscribe_url="https://tidings.test/u/tok123",
        unsubscribe_mailto="mailto:unsubscribe@news.tidings.test?subject=tok123",
        list_id="welcome.news.tidings.test",
        feedback_id="welcome:journey:tidings",
    )
    arguments.update(overrides)
    return build_message(rendered, **arguments)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def body(message: EmailMessage, subtype: str) -> str:
    """A decoded part with its canonical CRLF line breaks turned back into "\n"."""
    part = message.get_body((subtype,))
    assert part is not None
    return part.get_content().replace("\r\n", "\n")


def test_headers_are_present_and_correct() -> None:
    message = parse(build())
    assert message["From"] == "Tidings Demo <hello@news.tidings.test>"
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Welcome, Ada!"
    assert message["Date"] == "Mon, 02 Nov 2026 09:30:00 +0000"
    assert message["Message-ID"] == message_id_for("intent-1", "news.tidings.test")
    assert message["MIME-Version"] == "1.0"
    assert message["List-Unsubscribe"] == (
        "<https://tidings.test/u/tok123>, <mailto:unsubscribe@news.tidings.test?subject=tok123>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == "<welcome.news.tidings.test>"
    assert message["Feedback-ID"] == "welcome:journey:tidings"


def test_parts_round_trip_through_the_stdlib_parser() -> None:
    message = parse(build())
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert body(message, "plain") == RENDERED.text
    html = body(message, "html")
    assert RENDERED.html.split("<body>")[1] in html
    assert not message.defects and not any(p.defects for p in parts)


def test_preheader_is_a_hidden_span_at_the_top_of_the_body() -> None:
    html = body(parse(build()), "html")
    after_body = html.split("<body>", 1)[1]
    assert after_body.startswith('<span style="display:none')
    assert "Three things to try first</span><h1>" in after_body


def test_preheader_is_escaped_and_prepended_when_there_is_no_body_tag() -> None:
    rendered = RenderedEmail(subject="s", preheader="a <b> & c", html="<p>x</p>", text="x")
    html = body(parse(build(rendered)), "html")
    assert html.startswith("<span")
    assert "a &lt;b&gt; &amp; c</span><p>x</p>" in html


def test_message_id_is_deterministic_per_intent() -> None:
    first = message_id_for("intent-1", "news.tidings.test")
    assert first == message_id_for("intent-1", "news.tidings.test")
    assert first != message_id_for("intent-2", "news.tidings.test")
    assert first.startswith("<") and first.endswith("@news.tidings.test>")
    assert build() == build()


def test_non_ascii_subject_and_display_name_are_rfc2047_encoded() -> None:
    rendered = RenderedEmail(subject=" ".join(["Grüße, Jörg — 你好"] * 4), preheader="", html="<p>ü</p>", text="ü")
    raw = build(rendered, mail_from="Tidings Démo <hello@news.tidings.test>")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"=?utf-8?b?" in head
    message = parse(raw)
    assert message["Subject"] == rendered.subject
    assert message["From"].addresses[0].display_name == "Tidings Démo"


def test_every_line_is_crlf_terminated_and_at_most_998_octets() -> None:
    long_line = "word " * 1000
    rendered = RenderedEmail(subject="x" * 800, preheader="", html=f"<p>{long_line}</p>", text=long_line + "\n" + "é" * 2000)
    raw = build(rendered)
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    message = parse(raw)
    assert body(message, "plain") == long_line + "\n" + "é" * 2000


def test_mostly_non_ascii_bodies_use_base64() -> None:
    rendered = RenderedEmail(subject="s", preheader="", html="<p>" + "日本語" * 50 + "</p>", text="日本語" * 50)
    raw = build(rendered)
    assert b"Content-Transfer-Encoding: base64" in raw
    assert body(parse(raw), "plain") == "日本語" * 50


def test_mailto_only_unsubscribe_has_no_one_click_header() -> None:
    message = parse(build(unsubscribe_url=None))
    assert message["List-Unsubscribe"] == "<mailto:unsubscribe@news.tidings.test?subject=tok123>"
    assert message["List-Unsubscribe-Post"] is None


def test_optional_headers_are_omitted_when_not_given() -> None:
    message = parse(build(unsubscribe_url=None, unsubscribe_mailto=None, list_id="", feedback_id=""))
    for header in ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "Feedback-ID"):
        assert message[header] is None


def test_naive_date_is_taken_as_utc() -> None:
    assert parse(build(date=datetime(2026, 11, 2, 9, 30)))["Date"] == "Mon, 02 Nov 2026 09:30:00 +0000"


@pytest.mark.parametrize("bad", ["Hi\r\nBcc: victim@example.com", "Hi\nX: y", "Hi\rX", "Hi\x00"])
def test_subject_injection_is_rejected(bad: str) -> None:
    rendered = RenderedEmail(subject=bad, preheader="", html="<p>x</p>", text="x")
    with pytest.raises(HeaderInjectionError) as err:
        build(rendered)
    assert err.value.header == "Subject"


@pytest.mark.parametrize(
    "field, header",
    [
        ("to", "To"),
        ("mail_from", "From"),
        ("list_id", "List-Id"),
        ("feedback_id", "Feedback-ID"),
        ("unsubscribe_url", "List-Unsubscribe"),
        ("unsubscribe_mailto", "List-Unsubscribe"),
        ("sending_domain", "sending_domain"),
    ],
)
def test_header_injection_in_any_field_names_the_header(field: str, header: str) -> None:
    values = {
        "to": "ada@example.com\r\nBcc: victim@example.com",
        "mail_from": "Demo <hello@news.tidings.test>\r\nBcc: victim@example.com",
        "list_id": "welcome\r\nBcc: victim@example.com",
        "feedback_id": "a:b\nBcc: victim@example.com",
        "unsubscribe_url": "https://x.test/u\r\nBcc: victim@example.com",
        "unsubscribe_mailto": "mailto:u@x.test\nBcc: victim@example.com",
        "sending_domain": "news.tidings.test\r\nBcc: x",
    }
    with pytest.raises(HeaderInjectionError) as err:
        build(**{field: values[field]})
    assert err.value.header == header
    assert header in str(err.value)


@pytest.mark.parametrize(
    "to",
    [
        "Ada <ada@example.com>",
        "ada@example.com, eve@example.com",
        "ada@example.com <eve@example.com>",
        "not-an-address",
        "ada@",
        "@example.com",
        '"ada"@example.com',
        "ada@example",
        "",
    ],
)
def test_to_must_be_one_plain_address(to: str) -> None:
    with pytest.raises(InvalidAddressError, match="To"):
        build(to=to)


@pytest.mark.parametrize("mail_from", ["not an address", "Eve <eve@evil.test>, Ada <ada@example.com>", 'Eve "x" <eve@x.test>'])
def test_from_must_be_one_mailbox(mail_from: str) -> None:
    with pytest.raises(InvalidAddressError, match="From"):
        build(mail_from=mail_from)


@pytest.mark.parametrize(
    "overrides, problem",
    [
        ({"unsubscribe_url": "javascript:alert(1)"}, "http"),
        ({"unsubscribe_url": "https://x.test/a b"}, "http"),
        ({"unsubscribe_mailto": "https://x.test"}, "mailto"),
        ({"sending_domain": "not a domain"}, "domain"),
        ({"feedback_id": "x" * 1000}, "more than"),
    ],
)
def test_invalid_header_values_are_rejected(overrides: dict[str, str], problem: str) -> None:
    with pytest.raises(MessageError, match=problem):
        build(**overrides)


def test_body_lines_starting_with_a_dot_survive() -> None:
    rendered = RenderedEmail(subject="s", preheader="", html="<p>x</p>\n.hidden", text=".\n.line\n")
    assert body(parse(build(rendered)), "plain") == ".\n.line\n"
