"""Signed tokens for links in emails: unsubscribe, preference centre, double opt-in.

A token is `<payload>.<signature>`, both base64url without padding. The payload is compact JSON
`{"k": key id, "p": purpose, "s": subscriber id, "l": list id, "e": expiry (unix seconds)}`;
the signature is HMAC-SHA256 over the payload text with the key named by `k`. Verification looks
the key id up among the accepted keys (several during a rotation), compares signatures in constant
time, then checks purpose and expiry against the `now` it is given.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Purpose = Literal["unsubscribe", "preferences", "confirm"]
PURPOSES: tuple[str, ...] = ("unsubscribe", "preferences", "confirm")
MAX_TOKEN_LENGTH = 1024


class TokenInvalid(ValueError):
    """The token is malformed, forged, tampered with, for another purpose, or expired."""


@dataclass(frozen=True)
class TokenClaims:
    purpose: str
    subscriber_id: str
    list_id: str
    expires_at: int
    key_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, payload.encode(), hashlib.sha256).digest()


def sign(
    purpose: Purpose,
    subscriber_id: str,
    *,
    key_id: str,
    key: bytes,
    now: datetime,
    ttl: timedelta,
    list_id: str = "",
) -> str:
    if purpose not in PURPOSES:
        raise ValueError(f"purpose: must be one of {', '.join(PURPOSES)}")
    if len(key) < 32:
        raise ValueError("key: at least 32 bytes")
    claims = {"k": key_id, "p": purpose, "s": subscriber_id, "l": list_id, "e": int((now + ttl).timestamp())}
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_b64(_mac(key, payload))}"


def verify(token: str, *, purpose: Purpose, keys: Mapping[str, bytes], now: datetime) -> TokenClaims:
    """The token's claims, or TokenInvalid saying (without detail an attacker could use) why not."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise TokenInvalid("malformed token")
    payload, signature_text = token.split(".")
    try:
        signature = _unb64(signature_text)
        claims = json.loads(_unb64(payload))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise TokenInvalid("malformed token") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("k"), str):
        raise TokenInvalid("malformed token")
    key = keys.get(claims["k"])
    # Compare against some MAC even for an unknown key id, so timing does not tell key ids apart.
    expected = _mac(key if key is not None else b"\0" * 32, payload)
    if not hmac.compare_digest(expected, signature) or key is None:
        raise TokenInvalid("bad signature")
    fields = (claims.get("p"), claims.get("s"), claims.get("l"), claims.get("e"))
    if not all(isinstance(f, str) for f in fields[:3]) or not isinstance(fields[3], int):
        raise TokenInvalid("malformed token")
    if claims["p"] != purpose:
        raise TokenInvalid("token is for another purpose")
    if claims["e"] <= int(now.timestamp()):
        raise TokenInvalid("token expired")
    return TokenClaims(
        purpose=claims["p"], subscriber_id=claims["s"], list_id=claims["l"], expires_at=claims["e"], key_id=claims["k"]
    )
