"""Issue 6: 1,000 send intents, the worker SIGKILLed after several hundred were accepted, then
restarted: every recipient holds exactly one message. Intents in flight at the kill are recorded
ambiguous (RFC 1047) and not resent; they are reported, and hold at most one message."""

from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.sender_support import (
    deliveries, intent, produce_intents, scripted_smtp, wait_until, worker_settings, worker_stack,
)

pytestmark = pytest.mark.e2e

COUNT = 1000


@pytest.mark.timeout(240)
def test_sigkill_mid_send_then_restart_delivers_each_intent_once(broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with scripted_smtp() as smtp:
        settings = worker_settings(tmp_path, broker, smtp.port)
        with worker_stack(settings) as stack:
            intents = [intent(n, f"ok-{n}@example.com") for n in range(COUNT)]
            produce_intents(settings, intents)
            wait_until(lambda: smtp.total() >= 300, 60, "several hundred accepted messages", every=0.01)
            worker = stack.services["worker"]
            worker.stop(sig=signal.SIGKILL)
            killed_at = smtp.total()
            time.sleep(0.5)
            worker.start()
            worker.wait_ready()

            wanted = {i.intent_id for i in intents}

            def resolved():  # type: ignore[no-untyped-def]
                events = deliveries(settings)
                final = {e.intent_id: e.kind for e in events if e.kind in ("accepted", "ambiguous")}
                return events if wanted <= set(final) else None

            events = wait_until(resolved, 120, "every intent to be accepted or ambiguous", every=2)

    kinds: dict[str, set[str]] = {}
    for event in events:
        kinds.setdefault(event.intent_id, set()).add(event.kind)
    ambiguous = {i for i, k in kinds.items() if "ambiguous" in k}
    assert not any({"accepted", "ambiguous"} <= k for k in kinds.values()), "an intent was both accepted and ambiguous"
    duplicated, missing, ambiguous_held = [], [], 0
    for item in intents:
        held = len(smtp.messages_for(item.to))
        if item.intent_id in ambiguous:
            assert held <= 1, f"{item.to}: an ambiguous intent was resent"
            ambiguous_held += held
        elif held != 1:
            (duplicated if held > 1 else missing).append(item.to)
    assert not duplicated and not missing, (duplicated[:5], missing[:5])
    print(f"killed after {killed_at} accepted; {len(ambiguous)} ambiguous ({ambiguous_held} of them reached the relay); "
          f"{COUNT - len(ambiguous)} delivered exactly once")
