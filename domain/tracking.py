"""Signed tokens for links in emails, click-tracking link rewriting and the open pixel.

A token is `v1.<key id>.<payload>.<signature>`: the payload is compact JSON in base64url, the
signature HMAC-SHA256 over `v1.<key id>.<payload>` with the key the id names, truncated to 128 bits.
Payloads carry their expiry (`exp`, Unix seconds) and their purpose (`p`: click, open, or ref: the
`X-Tidings-Ref` header that lets bounces and complaints name their message). A click
token binds the target URL, so the redirect can only go where the email's own link pointed (no
open redirect).

Unsubscribe links are the consent area's (`domain/tokens.py`, served at `/u/{token}`); its token
format has a fixed set of purposes, so tracking has this signer of its own. Both use the same
rotating keys (`infra/token_keys.py`), and the two formats cannot be confused: ours has four
dot-separated parts and starts with `v1.`, theirs two.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Mapping

TOKEN_VERSION = "v1"
MAX_TOKEN_CHARS = 4096
MAX_URL_CHARS = 2048
PURPOSES = ("click", "open", "ref")


class TokenError(ValueError):
    """A token is malformed, forged, expired or meant for something else."""


@dataclass(frozen=True)
class Signer:
    """Signs with `key_id`; verifies with any key in `keys` (rotation: old ids stay verifiable)."""

    keys: Mapping[str, bytes]
    key_id: str

    def __post_init__(self) -> None:
        if self.key_id not in self.keys:
            raise ValueError(f"signing key id {self.key_id!r} has no key")
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,32}", self.key_id):
            raise ValueError(f"key id {self.key_id!r}: use 1-32 letters, digits, '-' or '_'")
        if any(len(k) < 16 for k in self.keys.values()):
            raise ValueError("tracking keys must be at least 16 bytes")

    def sign(self, purpose: str, claims: Mapping[str, Any], expires_at: datetime) -> str:
        if purpose not in PURPOSES:
            raise ValueError(f"purpose {purpose!r}: must be one of {', '.join(PURPOSES)}")
        payload = {"p": purpose, "exp": int(expires_at.timestamp()), **claims}
        return self._sign_json(json.dumps(payload, separators=(",", ":")))

    def _sign_json(self, payload: str) -> str:
        """Signs compact JSON that already holds `p` and `exp` (track_html assembles it from cached pieces)."""
        body = _b64(payload.encode())
        head = f"{TOKEN_VERSION}.{self.key_id}.{body}"
        return f"{head}.{_b64(self._mac(self.keys[self.key_id], head))}"

    def verify(self, token: str, purpose: str, now: datetime) -> dict[str, Any]:
        """The token's claims, or TokenError saying why it is refused."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise TokenError("token too long")
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != TOKEN_VERSION:
            raise TokenError("not a tidings token")
        _, key_id, body, signature = parts
        key = self.keys.get(key_id)
        if key is None:
            raise TokenError("unknown key id")
        expected = _b64(self._mac(key, f"{TOKEN_VERSION}.{key_id}.{body}"))
        if not hmac.compare_digest(expected, signature):
            raise TokenError("bad signature")
        try:
            claims = json.loads(_unb64(body))
        except ValueError:
            raise TokenError("unreadable payload") from None
        if not isinstance(claims, dict) or claims.get("p") != purpose:
            raise TokenError(f"not a {purpose} token")
        if not isinstance(claims.get("exp"), int) or claims["exp"] < now.timestamp():
            raise TokenError("expired")
        return claims

    @staticmethod
    def _mac(key: bytes, head: str) -> bytes:
        return hmac.digest(key, head.encode(), "sha256")[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_\-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- links in the html ------------------------------------------------------------------------

_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.I | re.S)
_NO_TRACK = re.compile(r"\bdata-no-track\b", re.I)
_BODY_END = re.compile(r"</body\s*>", re.I)


@lru_cache(maxsize=4096)
def link_id(url: str) -> str:
    """An opaque, stable id for a link target: reveals nothing about the URL."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


@lru_cache(maxsize=4096)
def _link_claims(url: str) -> str:
    """The end of a click payload, `,"l":…,"u":…}`: the same for every recipient of a link."""
    return f',"l":{json.dumps(link_id(url))},"u":{json.dumps(url)}}}'


@dataclass(frozen=True)
class Tracked:
    html: str
    links: dict[str, str]  # link id -> original URL


def track_html(
    body: str,
    *,
    signer: Signer,
    public_url: str,
    intent_id: str,
    subscriber_id: str,
    expires_at: datetime,
    skip_prefixes: tuple[str, ...] = (),
) -> Tracked:
    """Links rewritten to `{public_url}/t/c/{token}` and an open pixel before `</body>`.

    Only absolute http(s) links are rewritten; mailto:, anchors, `data-no-track` links and links
    starting with a `skip_prefixes` entry (our own unsubscribe page) are left alone.
    """
    base = public_url.rstrip("/")
    links: dict[str, str] = {}
    # Every token of this message starts with the same claims; its JSON is made once, not per link.
    # The result is byte for byte what Signer.sign makes from {"p", "exp", "i", "s", "l", "u"}.
    recipient = json.dumps({"exp": int(expires_at.timestamp()), "i": intent_id, "s": subscriber_id}, separators=(",", ":"))[1:-1]

    def rewrite(match: re.Match[str]) -> str:
        prefix, quote, raw = match.groups()
        url = (html.unescape(raw) if "&" in raw else raw).strip()
        if (
            _NO_TRACK.search(match.group(0))
            or not url.lower().startswith(("http://", "https://"))
            or len(url) > MAX_URL_CHARS
            or any(url.startswith(p) for p in skip_prefixes)
        ):
            return match.group(0)
        links[link_id(url)] = url
        token = signer._sign_json('{"p":"click",' + recipient + _link_claims(url))
        return f"{prefix}{quote}{base}/t/c/{token}{quote}"

    rewritten = _HREF.sub(rewrite, body)
    pixel_token = signer._sign_json('{"p":"open",' + recipient + "}")
    pixel = f'<img src="{base}/t/o/{pixel_token}.gif" width="1" height="1" alt="" style="display:block;border:0">'
    match = None
    for match in _BODY_END.finditer(rewritten):
        pass  # the last </body>
    if match is None:
        return Tracked(rewritten + pixel, links)
    return Tracked(rewritten[: match.start()] + pixel + rewritten[match.start() :], links)


def expiry(now: datetime, days: int) -> datetime:
    return now + timedelta(days=days)
