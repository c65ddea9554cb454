"""Event ids recently acknowledged by Kafka, so a client's retry is not written twice.

This is a best-effort first line only: it is per process, bounded and in memory, and two
concurrent requests with the same id can both pass. Every downstream consumer deduplicates on
`event_id` as well; that is what makes effects idempotent (DESIGN.md, guarantee 2).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

DEFAULT_CAPACITY = 200_000


class RecentIds:
    """A bounded LRU set of ids: the least recently seen id is forgotten first."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, event_id: object) -> bool:
        with self._lock:
            if event_id not in self._ids:
                return False
            self._ids.move_to_end(event_id)  # type: ignore[arg-type]
            return True

    def __len__(self) -> int:
        return len(self._ids)

    def add_all(self, event_ids: Iterable[str]) -> None:
        with self._lock:
            for event_id in event_ids:
                self._ids[event_id] = None
                self._ids.move_to_end(event_id)
            while len(self._ids) > self.capacity:
                self._ids.popitem(last=False)
