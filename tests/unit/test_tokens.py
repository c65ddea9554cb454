from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from domain import tokens

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)
KEY_A = b"a" * 32
KEY_B = b"b" * 32


def make(purpose="unsubscribe", key_id="k1", key=KEY_A, ttl=timedelta(days=1), list_id=""):
    return tokens.sign(purpose, "sub-1", key_id=key_id, key=key, now=NOW, ttl=ttl, list_id=list_id)


def test_a_signed_token_verifies_with_its_claims():
    claims = tokens.verify(make(list_id="news"), purpose="unsubscribe", keys={"k1": KEY_A}, now=NOW)
    assert (claims.subscriber_id, claims.list_id, claims.key_id) == ("sub-1", "news", "k1")


def test_tokens_signed_before_a_rotation_verify_until_they_expire():
    old = make(key_id="k1", key=KEY_A)
    new = make(key_id="k2", key=KEY_B)
    keys = {"k1": KEY_A, "k2": KEY_B}
    assert tokens.verify(old, purpose="unsubscribe", keys=keys, now=NOW).key_id == "k1"
    assert tokens.verify(new, purpose="unsubscribe", keys=keys, now=NOW).key_id == "k2"
    with pytest.raises(tokens.TokenInvalid, match="expired"):
        tokens.verify(old, purpose="unsubscribe", keys=keys, now=NOW + timedelta(days=2))


def test_a_retired_key_no_longer_verifies():
    with pytest.raises(tokens.TokenInvalid, match="signature"):
        tokens.verify(make(key_id="k1"), purpose="unsubscribe", keys={"k2": KEY_B}, now=NOW)


def test_a_token_for_another_purpose_is_refused():
    with pytest.raises(tokens.TokenInvalid, match="purpose"):
        tokens.verify(make(purpose="preferences"), purpose="unsubscribe", keys={"k1": KEY_A}, now=NOW)


def test_an_expired_token_is_refused():
    with pytest.raises(tokens.TokenInvalid, match="expired"):
        tokens.verify(make(ttl=timedelta(seconds=1)), purpose="unsubscribe", keys={"k1": KEY_A},
                      now=NOW + timedelta(seconds=1))


@pytest.mark.parametrize("bad", ["", "abc", "a.b.c", "x" * 2000, "!!!.???", "e30.AAAA"])
def test_malformed_tokens_are_refused(bad):
    with pytest.raises(tokens.TokenInvalid):
        tokens.verify(bad, purpose="unsubscribe", keys={"k1": KEY_A}, now=NOW)


def test_short_keys_and_unknown_purposes_are_refused_when_signing():
    with pytest.raises(ValueError, match="key"):
        tokens.sign("unsubscribe", "s", key_id="k", key=b"short", now=NOW, ttl=timedelta(days=1))
    with pytest.raises(ValueError, match="purpose"):
        tokens.sign("delete-everything", "s", key_id="k", key=KEY_A, now=NOW, ttl=timedelta(days=1))  # type: ignore[arg-type]


@hsettings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0), replacement=st.characters(whitelist_categories=("Lu", "Ll", "Nd")))
def test_any_single_character_change_is_refused(position, replacement):
    token = make()
    i = position % len(token)
    tampered = token[:i] + replacement + token[i + 1:]
    if tampered == token:
        return
    try:
        claims = tokens.verify(tampered, purpose="unsubscribe", keys={"k1": KEY_A}, now=NOW)
    except tokens.TokenInvalid:
        return
    # base64 has a few spare bits in its last character: a change there can decode to the same bytes.
    assert claims == tokens.verify(token, purpose="unsubscribe", keys={"k1": KEY_A}, now=NOW)


@hsettings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_verifies(text):
    with pytest.raises(tokens.TokenInvalid):
        tokens.verify(text, purpose="unsubscribe", keys={"k1": KEY_A}, now=NOW)
