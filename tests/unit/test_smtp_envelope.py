"""The SMTP connector's per-send shortcuts give the bytes the general code gives."""

from __future__ import annotations

import re

from aiosmtplib.email import quote_address
from hypothesis import given, settings, strategies as st

from connectors.smtp import _LEADING_PERIOD, _LINE_ENDINGS, _address, _data_payload

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
dot_atom = st.lists(st.text(alphabet=ATEXT, min_size=1, max_size=6), min_size=1, max_size=3).map(".".join)
domain = st.lists(st.text(alphabet="abz09-", min_size=1, max_size=6), min_size=1, max_size=3).map(".".join)
anything = st.text(alphabet=ATEXT + ' .@<>"()\\,;:[]\t', max_size=20)


@settings(max_examples=300, deadline=None)
@given(address=st.one_of(st.builds("{}@{}".format, dot_atom, domain), anything))
def test_envelope_address_matches_aiosmtplib(address: str) -> None:
    try:
        expected = quote_address(address).encode("utf-8")
    except ValueError:
        expected = None
    try:
        got = _address(address)
    except ValueError:
        got = None
    assert got == expected


def slow_payload(message: bytes) -> bytes:
    message = _LINE_ENDINGS.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return _LEADING_PERIOD.sub(b"..", message) + b".\r\n"


@settings(max_examples=500, deadline=None)
@given(message=st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b" ", b".."]), max_size=12).map(b"".join))
def test_data_payload_is_canonical_dot_stuffed_and_terminated(message: bytes) -> None:
    payload = _data_payload(message)
    assert payload == slow_payload(message)
    assert payload.endswith(b"\r\n.\r\n") and not re.search(rb"(?<!\r)\n|\r(?!\n)", payload)
