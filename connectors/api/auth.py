"""Who is calling: an API key as `Authorization: Bearer <key>` or as the HTTP Basic user.

Segment and RudderStack SDKs send their write key as the Basic user with an empty password, so
one key works for the native and the Segment-compatible endpoints alike.
"""

from __future__ import annotations

import base64
import binascii

from connectors.api.errors import ApiError
from infra.api_keys import ApiKeyStore

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tidings", Basic realm="tidings"'}


def _unauthorized(error: str) -> ApiError:
    return ApiError(401, error, reason="unauthorized", field="Authorization", headers=dict(CHALLENGE))


def key_from_header(authorization: str | None) -> str:
    """The API key carried by an Authorization header value, or 401 saying what is wrong with it."""
    if not authorization:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>' or HTTP Basic with the key as user")
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials
    if scheme.lower() == "basic" and credentials:
        try:
            user, _, _password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _unauthorized("malformed HTTP Basic credentials") from None
        if user:
            return user
    raise _unauthorized("unsupported Authorization header: use 'Bearer <key>' or HTTP Basic with the key as user")


def authenticate(authorization: str | None, keys: ApiKeyStore) -> str:
    """The name of the caller's key, or 401."""
    name = keys.verify(key_from_header(authorization))
    if name is None:
        raise _unauthorized("invalid API key")
    return name
