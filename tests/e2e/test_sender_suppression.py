"""Issue 6: an unsubscribe, a hard bounce or a complaint for a subscriber with a send due seconds
later results in no send. The unsubscribe goes the real way: the one-click POST to the
List-Unsubscribe URL of an email the worker sent, through the API, the event store and its relay,
the consent topic and the consent stage. Bounce and complaint arrive as delivery events."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import httpx
import pytest

from domain.events import DeliveryEvent, stable_id
from infra.api_keys import ApiKeyStore
from infra.topics import Topic
from tests.e2e.sender_support import (
    deliveries, intent, produce_intents, scripted_smtp, wait_until, worker_settings, worker_stack,
)

pytestmark = pytest.mark.e2e


def feedback(subscriber: str, kind: str, bounce_type: str = "") -> DeliveryEvent:
    return DeliveryEvent(delivery_id=stable_id(subscriber, kind), intent_id=f"earlier-{subscriber}",
                         subscriber_id=subscriber, kind=kind, occurred_at=datetime.now(timezone.utc),
                         bounce_type=bounce_type)


def produce_deliveries(settings, events: list[DeliveryEvent]) -> None:  # type: ignore[no-untyped-def]
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for event in events:
        producer.produce(Topic.DELIVERY.name(settings), key=event.subscriber_id.encode(), value=event.to_bytes())
    assert producer.flush(30) == 0


@pytest.mark.timeout(180)
def test_unsubscribe_hard_bounce_and_complaint_stop_the_next_send(broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with scripted_smtp() as smtp:
        settings = worker_settings(tmp_path, broker, smtp.port)
        api_key = ApiKeyStore(settings).create("e2e")
        with worker_stack(settings, services=("worker", "api")):
            api = f"http://{settings.api_host}:{settings.api_port}"
            auth = {"Authorization": f"Bearer {api_key}"}
            created = httpx.post(f"{api}/v1/subscribers", headers=auth, timeout=30,
                                 json={"subscriber_id": "sub-unsub", "email": "ok-unsub@example.com"})
            assert created.status_code in (200, 201), created.text

            first = intent(1, "ok-unsub@example.com", subscriber="sub-unsub")
            produce_intents(settings, [first])
            wait_until(lambda: smtp.messages_for(first.to), 30, "the first email")
            headers = smtp.messages_for(first.to)[0].split(b"\r\n\r\n", 1)[0].decode()
            assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in headers
            url = re.search(r"^List-Unsubscribe: <([^>]+)>", headers, re.M).group(1)  # type: ignore[union-attr]
            assert httpx.get(url, timeout=10).status_code == 200  # a GET only shows the form
            assert httpx.post(url, timeout=10, data={"List-Unsubscribe": "One-Click"}).status_code == 200

            produce_deliveries(settings, [feedback("sub-bounce", "bounced", "hard"), feedback("sub-complaint", "complained")])
            time.sleep(3)  # "a send scheduled seconds later"
            later = [
                intent(2, "ok-unsub@example.com", subscriber="sub-unsub"),
                intent(3, "ok-bounce@example.com", subscriber="sub-bounce"),
                intent(4, "ok-complaint@example.com", subscriber="sub-complaint"),
                intent(5, "ok-control@example.com", subscriber="sub-control"),
                intent(6, "ok-complaint@example.com", subscriber="sub-complaint", transactional=True),
            ]
            produce_intents(settings, later)
            wanted = {i.intent_id for i in later}

            def settled():  # type: ignore[no-untyped-def]
                events = [e for e in deliveries(settings) if e.intent_id in wanted and e.kind in ("accepted", "skipped")]
                return {e.intent_id: e for e in events} if len(events) >= len(wanted) else None

            outcome = wait_until(settled, 60, "the later intents to be sent or skipped", every=1)

    unsub, bounce, complaint, control, receipt = (outcome[i.intent_id] for i in later)
    assert unsub.kind == "skipped" and "unsubscribed" in unsub.detail, unsub.detail
    assert bounce.kind == "skipped" and "hard" in bounce.detail.replace("_", " "), bounce.detail
    assert complaint.kind == "skipped" and "complain" in complaint.detail, complaint.detail
    assert control.kind == "accepted"
    assert receipt.kind == "accepted"  # transactional mail still goes after a complaint
    assert len(smtp.messages_for("ok-unsub@example.com")) == 1
    assert smtp.messages_for("ok-bounce@example.com") == []
    assert len(smtp.messages_for("ok-complaint@example.com")) == 1  # the transactional one only
