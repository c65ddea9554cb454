"""Issue 7: a warm-up plan's daily cap holds at the SMTP server across a worker restart (today's count
is table state recovered from its changelog, not memory); transactional mail is not capped."""

from __future__ import annotations

import signal
import time
from datetime import datetime, timezone

import pytest

from connectors.reputation_topic import publish_command
from domain.reputation import ReputationCommand
from tests.e2e.reputation_support import IDENTITY, snapshot
from tests.e2e.sender_support import (
    deliveries, intent, produce_intents, scripted_smtp, wait_until, worker_settings, worker_stack,
)

pytestmark = pytest.mark.e2e

CAP = 5


@pytest.mark.timeout(300)
def test_warmup_daily_cap_holds_across_a_worker_restart(broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with scripted_smtp() as smtp:
        settings = worker_settings(tmp_path, broker, smtp.port, reputation_thresholds="recheck_seconds=2")
        with worker_stack(settings) as stack:
            publish_command(settings, ReputationCommand(
                command_id="warmup-e2e", action="warmup", sending_domain=IDENTITY, plan=[CAP, CAP * 2],
                issued_at=datetime.now(timezone.utc), issued_by="e2e"))
            wait_until(lambda: (s := snapshot(settings, "all")) is not None and s.control.get("daily_cap") == CAP,
                       30, "the plan's first cap to be published")
            time.sleep(1.0)  # the worker's follower reads the same record
            first = [intent(i, f"ok-w{i}@example.org") for i in range(3)]
            produce_intents(settings, first)
            wait_until(lambda: smtp.total() == 3, 30, "the first 3 sends")

            worker = stack.services["worker"]
            worker.stop(sig=signal.SIGKILL)
            worker.start()
            worker.wait_ready()

            second = [intent(10 + i, f"ok-w{10 + i}@gmail.com") for i in range(6)]
            receipt = intent(99, "ok-receipt@example.org", transactional=True)
            produce_intents(settings, second + [receipt])
            wait_until(lambda: smtp.total() == CAP + 1, 60, "the cap's remaining sends and the receipt")
            time.sleep(6.0)  # several rechecks: nothing more may go today
            marketing = sum(len(smtp.messages_for(i.to)) for i in first + second)
            held = {e.intent_id for e in deliveries(settings) if e.kind == "deferred" and "reputation:warmup" in e.detail}

    assert marketing == CAP, marketing
    assert len(smtp.messages_for(receipt.to)) == 1
    assert len(held) == len(first) + len(second) - CAP
