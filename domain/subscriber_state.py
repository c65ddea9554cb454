"""Per-subscriber state helpers shared by the segment and journey folds.

Both folds run under at-least-once delivery, so each remembers the events it recently applied and
ignores a redelivered one. It remembers short digests rather than the ids themselves: 64 UUIDs
would be 2.5 KiB per subscriber, 64 digests are about 700 bytes. A digest is 48 bits, so two
different events of one subscriber collide with odds near 1 in 10^13.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from domain.conditions import is_scalar

RECENT_EVENTS_KEPT = 64


def event_digest(event_id: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(event_id.encode()).digest()[:6]).decode()


def already_applied(recent: list[str], event_id: str) -> bool:
    return event_digest(event_id) in recent


def remember(recent: list[str], event_id: str, keep: int = RECENT_EVENTS_KEPT) -> list[str]:
    return (recent + [event_digest(event_id)])[-keep:]


def merge_traits(traits: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Scalar traits from `update` win; a null removes the trait; nested values are not kept."""
    merged = dict(traits)
    for name, value in update.items():
        if value is None:
            merged.pop(name, None)
        elif is_scalar(value):
            merged[name] = value
    return merged


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> set[str]:
    """Keys whose value differs, comparing types too (`True` is not `1`)."""
    missing = object()
    return {
        key
        for key in before.keys() | after.keys()
        if _typed(before.get(key, missing)) != _typed(after.get(key, missing))
    }


def _typed(value: Any) -> tuple[type, Any]:
    return type(value), value
