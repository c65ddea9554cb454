from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from domain.events import Contract, EventEnvelope, SendIntent, stable_id
from infra.settings import Settings
from infra.topics import Topic

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def envelope(**overrides):
    values = dict(event_id="e1", type="order.placed", subscriber_id="u1", occurred_at=NOW, received_at=NOW)
    values.update(overrides)
    return EventEnvelope(**values)


def test_envelope_round_trips_through_bytes():
    event = envelope(properties={"total": 12.5}, context={"traits": {"email": "a@example.org"}})
    assert EventEnvelope.from_bytes(event.to_bytes()) == event
    assert event.traits == {"email": "a@example.org"}


def test_naive_times_are_utc_and_offsets_are_normalised():
    naive = envelope(occurred_at=datetime(2026, 11, 1, 12, 0))
    assert naive.occurred_at.tzinfo == timezone.utc
    shifted = envelope(occurred_at=datetime(2026, 11, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    assert shifted.occurred_at == NOW and shifted.occurred_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "field, value",
    [("event_id", ""), ("event_id", "has space"), ("event_id", "x" * 129), ("subscriber_id", "a/b"),
     ("type", ""), ("type", "bad\nname"), ("source", "somewhere")],
)
def test_envelope_rejects_bad_identifiers(field, value):
    with pytest.raises(ValidationError) as info:
        envelope(**{field: value})
    assert field in str(info.value)


def test_unknown_fields_are_rejected_and_contracts_are_frozen():
    with pytest.raises(ValidationError):
        EventEnvelope.model_validate({**envelope().model_dump(), "surprise": 1})
    with pytest.raises(ValidationError):
        envelope().event_id = "other"  # type: ignore[misc]


def test_stable_ids_are_deterministic_and_distinguish_their_parts():
    assert stable_id("a", "b") == stable_id("a", "b")
    assert stable_id("a", "b") != stable_id("ab", "")
    assert len(stable_id("x")) == 32


def test_registry_topics_are_unique_and_subscriber_topics_are_co_partitioned():
    settings = Settings(topic_prefix="p", partitions=6)
    names = [t.name(settings) for t in Topic]
    assert len(names) == len(set(names)) and all(n.startswith("p.") for n in names)
    keyed = [t for t in Topic if t.spec.subscriber_keyed]
    assert {t.partitions(settings) for t in keyed} == {6}
    assert Topic.EVENTS in keyed and Topic.SEND_INTENTS in keyed and Topic.DELIVERY in keyed
    for topic in Topic:
        assert issubclass(topic.spec.payload, Contract)
        assert topic.config()["cleanup.policy"] in ("delete", "compact")
    assert Topic.DEFINITIONS.config()["cleanup.policy"] == "compact"


def test_send_intent_requires_its_identity_fields():
    with pytest.raises(ValidationError) as info:
        SendIntent.model_validate({"intent_id": "i"})
    assert "subscriber_id" in str(info.value)
