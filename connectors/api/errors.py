"""The one error type of the ingest API: a status, a message naming the problem, and the field."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError


class ApiError(Exception):
    """A rejected request. Rendered as `{"error": ..., "field": ..., "detail": [...]}`.

    `reason` labels the rejection in metrics; `events` is how many events the request carried
    (1 when that is unknown, e.g. for malformed JSON).
    """

    def __init__(
        self,
        status: int,
        error: str,
        *,
        reason: str,
        field: str | None = None,
        detail: list[dict[str, Any]] | None = None,
        events: int = 1,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.reason = reason
        self.field = field
        self.detail = detail
        self.events = events
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error}
        if self.field is not None:
            body["field"] = self.field
        if self.detail is not None:
            body["detail"] = self.detail
        body.update(self.extra)
        return body


def field_path(loc: Iterable[str | int]) -> str:
    """("events", 3, "subscriber_id") -> "events[3].subscriber_id"."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def issue(loc: Sequence[str | int], message: str, kind: str) -> dict[str, Any]:
    return {"field": field_path(loc), "message": message, "type": kind}


def issues_from(exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[dict[str, Any]]:
    """pydantic errors as issues, without echoing the offending input back (it may be personal data)."""
    return [issue([*prefix, *err["loc"]], err["msg"], err["type"]) for err in exc.errors()]


def invalid(issues: list[dict[str, Any]], events: int) -> ApiError:
    first = issues[0]
    more = f" (and {len(issues) - 1} more problem(s), see detail)" if len(issues) > 1 else ""
    return ApiError(
        422,
        f"invalid {first['field'] or 'body'}: {first['message']}{more}",
        reason="invalid",
        field=first["field"],
        detail=issues,
        events=events,
    )
