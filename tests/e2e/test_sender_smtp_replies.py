"""Issue 6: through the real worker's sender, a scripted SMTP server's every answer ends each intent in
the right ledger state with the right number of attempts.

4xx answers (421, 450, 451 4.7.1, 452) are deferred and retried with backoff until the maximum age
(here 1 s base, 5.5 s maximum age: attempts at ~0 s, ~1 s and ~3 s, and the third retry would fall
past the age), then soft-bounce. 550 5.1.1 is a hard bounce, 552 and 554 5.7.1 soft bounces, all
final at once. A connection dropped after the content is ambiguous and never retried.
"""

from __future__ import annotations

import pytest

from tests.e2e.sender_support import (
    deliveries, intent, ledger_entries, produce_intents, scripted_smtp, wait_until, worker_settings, worker_stack,
)

pytestmark = pytest.mark.e2e

EXPECTED = {
    # local part: (ledger state, bounce type, attempts, delivery kinds in order)
    "ok": ("accepted", None, 1, ["accepted"]),
    "r421": ("bounced", "soft", 3, ["deferred", "deferred", "bounced"]),
    "r450": ("bounced", "soft", 3, ["deferred", "deferred", "bounced"]),
    "r451": ("bounced", "soft", 3, ["deferred", "deferred", "bounced"]),
    "r452": ("bounced", "soft", 3, ["deferred", "deferred", "bounced"]),
    "r550": ("bounced", "hard", 1, ["bounced"]),
    "r552": ("bounced", "soft", 1, ["bounced"]),
    "r554": ("bounced", "soft", 1, ["bounced"]),
    "drop": ("ambiguous", None, 1, ["ambiguous"]),
}


@pytest.mark.timeout(180)
def test_each_smtp_answer_ends_in_its_ledger_state_and_retry_count(broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with scripted_smtp() as smtp:
        settings = worker_settings(tmp_path, broker, smtp.port, retry_base_seconds=1.0, retry_max_age_seconds=5.5)
        with worker_stack(settings):
            intents = {local: intent(n, f"{local}-{n}@example.com") for n, local in enumerate(EXPECTED)}
            produce_intents(settings, list(intents.values()))
            finals = ("accepted", "bounced", "ambiguous")

            def all_final():  # type: ignore[no-untyped-def]
                ledger = ledger_entries(settings)
                done = [ledger.get(i.intent_id, {}).get("state") in finals for i in intents.values()]
                return ledger if all(done) else None

            ledger = wait_until(all_final, 60, "every intent to reach a final ledger state")
            events = deliveries(settings)

    for local, (state, bounce_type, attempts, kinds) in EXPECTED.items():
        item = intents[local]
        entry = ledger[item.intent_id]
        assert (entry["state"], entry.get("bounce_type"), entry["attempt"]) == (state, bounce_type, attempts), local
        # Policy holds (e.g. "reputation:starting" while a fresh worker loads its controls) are not SMTP attempts.
        mine = sorted((e for e in events if e.intent_id == item.intent_id and not e.detail.startswith("policy:")),
                      key=lambda e: (e.attempt, e.occurred_at))
        assert [e.kind for e in mine] == kinds, (local, [(e.kind, e.attempt, e.smtp_code, e.detail, e.occurred_at.isoformat()) for e in mine])
        assert [e.attempt for e in mine] == list(range(1, attempts + 1)), local
        assert smtp.rcpt_counts[item.to] == attempts, local  # the relay saw exactly that many tries
    hard = next(e for e in events if e.intent_id == intents["r550"].intent_id)
    assert (hard.smtp_code, hard.enhanced_status, hard.bounce_type) == (550, "5.1.1", "hard")
    gave_up = next(e for e in events if e.intent_id == intents["r451"].intent_id and e.kind == "bounced")
    assert gave_up.enhanced_status == "4.7.1" and "gave up after 3 attempts" in gave_up.detail
    assert len(smtp.messages_for(intents["ok"].to)) == 1
    assert len(smtp.messages_for(intents["drop"].to)) == 1  # delivered once, recorded ambiguous, not resent
