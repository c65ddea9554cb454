"""Versioning of published definitions: a new version only when the content changed."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from domain.events import DefinitionPublished

DefinitionKind = Literal["journey", "segment", "template"]


def content_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def next_publication(
    kind: DefinitionKind,
    definition_id: str,
    body: dict[str, Any],
    current: DefinitionPublished | None,
    now: datetime,
) -> DefinitionPublished | None:
    """The publication to append, or None when `body` equals what is live."""
    digest = content_hash(body)
    if current is not None and current.content_hash == digest:
        return None
    version = 1 if current is None else current.version + 1
    return DefinitionPublished(
        kind=kind, definition_id=definition_id, version=version, content_hash=digest, body=body, published_at=now
    )
