"""Reading a request body with a hard size limit, and parsing it as JSON."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request

from connectors.api.errors import ApiError


def _too_large(size_note: str, limit: int) -> ApiError:
    return ApiError(
        413,
        f"request body {size_note}; the limit is {limit} bytes ({limit // 1024} KiB)",
        reason="body_too_large",
        field="body",
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 as soon as it passes `limit` bytes.

    Content-Length is only a hint: a declared size over the limit is refused before reading, but
    the limit is enforced on the bytes actually received (chunked bodies have no length at all).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, f"invalid Content-Length header {declared[:32]!r}", reason="bad_request", field="Content-Length")
        if int(declared) > limit:
            raise _too_large(f"declares {int(declared)} bytes", limit)
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _too_large(f"exceeds {limit} bytes", limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "client disconnected before sending the whole body", reason="bad_request") from None
    return b"".join(chunks)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """The JSON value in `raw`, or 422 naming "invalid JSON" and where it broke."""
    if not raw.strip():
        raise ApiError(422, "invalid JSON: the body is empty", reason="invalid_json", field="body")
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(
            422, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", reason="invalid_json", field="body"
        ) from None
    except UnicodeDecodeError:
        raise ApiError(422, "invalid JSON: the body is not UTF-8 text", reason="invalid_json", field="body") from None
    except RecursionError:
        raise ApiError(422, "invalid JSON: nested too deeply", reason="invalid_json", field="body") from None
    except ValueError as exc:
        raise ApiError(422, f"invalid JSON: {exc}", reason="invalid_json", field="body") from None
