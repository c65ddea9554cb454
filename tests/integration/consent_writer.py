"""A writer process for the relay kill test: `python -m tests.integration.consent_writer W SUBS CHANGES`.

Writer W owns subscribers w{W}-0 .. w{W}-{SUBS-1} and records CHANGES events for each (a
registration, then list subscribe/unsubscribe toggles). Settings come from TIDINGS_* variables.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("AGGREGATE_CACHE_MAXSIZE", "10000")  # this process alone writes its subscribers
    from infra.event_store import open_event_store
    from infra.settings import Settings

    writer, subscribers, changes = (int(a) for a in sys.argv[1:4])
    store = open_event_store(Settings())
    try:
        ids = [f"w{writer}-{i}" for i in range(subscribers)]
        for sid in ids:
            store.subscribers.register_or_update(sid, f"{sid}@example.com", actor=f"writer{writer}")
        for n in range(1, changes):
            for sid in ids:
                command = "subscribe" if n % 2 else "unsubscribe"
                store.subscribers.change(sid, command, list_id="news", actor=f"writer{writer}")
    finally:
        store.close()


if __name__ == "__main__":
    main()
