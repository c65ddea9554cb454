"""Signed tokens, click-link rewriting and the open pixel."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import re

import pytest

from domain.tracking import Signer, TokenError, link_id, track_html

NOW = datetime(2026, 11, 2, tzinfo=timezone.utc)
LATER = NOW + timedelta(days=30)
SIGNER = Signer({"k1": b"0123456789abcdef0123456789abcdef"}, "k1")


def tracked(body: str) -> tuple[str, dict[str, str]]:
    out = track_html(body, signer=SIGNER, public_url="https://t.test/", intent_id="i-1", subscriber_id="s-1",
                     expires_at=LATER, skip_prefixes=("https://t.test/u/",))
    return out.html, out.links


def tokens_in(html: str, kind: str) -> list[str]:
    marker = f"https://t.test/t/{kind}/"
    return [re.split("[\"']", part, maxsplit=1)[0].removesuffix(".gif") for part in html.split(marker)[1:]]


def test_links_are_rewritten_to_signed_click_tokens_bound_to_the_url() -> None:
    html, links = tracked('<a href="https://shop.test/cart?id=1&amp;x=2">cart</a> <a class=b href=\'http://x.test/\'>x</a>')
    assert "shop.test" not in html and "x.test" not in html
    assert set(links.values()) == {"https://shop.test/cart?id=1&x=2", "http://x.test/"}
    claims = [SIGNER.verify(t, "click", NOW) for t in tokens_in(html, "c")]
    assert [c["u"] for c in claims] == ["https://shop.test/cart?id=1&x=2", "http://x.test/"]
    assert all(c["l"] == link_id(c["u"]) and c["i"] == "i-1" and c["s"] == "s-1" for c in claims)


def test_non_http_anchor_no_track_and_unsubscribe_links_stay() -> None:
    body = ('<a href="mailto:a@b.test">m</a><a href="#top">t</a><a data-no-track href="https://keep.test/">k</a>'
            '<a href="https://t.test/u/abc">unsubscribe</a><a href="javascript:alert(1)">j</a>')
    html, links = tracked(body)
    assert links == {}
    assert html.startswith(body)


def test_open_pixel_goes_before_the_last_body_end() -> None:
    html, _ = tracked("<html><body><p>hi</p></body></html>")
    assert html.index("/t/o/") < html.index("</body>")
    assert SIGNER.verify(tokens_in(html, "o")[0], "open", NOW) == {"p": "open", "exp": int(LATER.timestamp()), "i": "i-1", "s": "s-1"}
    assert "/t/o/" in tracked("<p>no body tag</p>")[0]


def test_forged_tampered_expired_and_misused_tokens_are_refused() -> None:
    token = SIGNER.sign("click", {"u": "https://shop.test/"}, LATER)
    version, kid, body, sig = token.split(".")
    other = Signer({"k1": b"another-secret-that-is-long-enough"}, "k1")
    forged_target = other.sign("click", {"u": "https://evil.test/"}, LATER)
    cases = {
        "bad signature": [forged_target, f"{version}.{kid}.{body}.{sig[:-2]}AA", f"{version}.{kid}.{body}x.{sig}"],
        "unknown key id": [f"{version}.k9.{body}.{sig}"],
        "not a tidings token": ["", "abc", "v2.k1.a.b", "v1.k1.a"],
        "not a open token": [token],
        "token too long": ["v1.k1." + "a" * 5000 + ".b"],
    }
    for problem, bad_tokens in cases.items():
        for bad in bad_tokens:
            purpose = "open" if problem == "not a open token" else "click"
            with pytest.raises(TokenError, match=problem):
                SIGNER.verify(bad, purpose, NOW)
    with pytest.raises(TokenError, match="expired"):
        SIGNER.verify(token, "click", LATER + timedelta(seconds=1))


def test_rotated_keys_still_verify_old_tokens() -> None:
    old = SIGNER.sign("open", {"i": "x"}, LATER)
    rotated = Signer({"k1": b"0123456789abcdef0123456789abcdef", "k2": b"fedcba9876543210fedcba9876543210"}, "k2")
    assert rotated.verify(old, "open", NOW)["i"] == "x"
    assert rotated.sign("open", {}, LATER).split(".")[1] == "k2"


def test_only_click_and_open_tokens_are_signed() -> None:
    with pytest.raises(ValueError, match="purpose"):
        SIGNER.sign("unsubscribe", {}, LATER)


@pytest.mark.parametrize("keys, kid, problem", [({"k1": b"short"}, "k1", "16 bytes"), ({"k1": b"x" * 32}, "k2", "no key"),
                                                ({"a.b": b"x" * 32}, "a.b", "key id")])
def test_bad_signer_settings(keys: dict, kid: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Signer(keys, kid)
