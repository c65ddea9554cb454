"""Native `POST /v1/events` input: mapping to EventEnvelope, validation naming the field, size limits."""

from datetime import datetime, timezone

import pytest

from connectors.api.errors import ApiError, field_path
from connectors.api.ingest import MAX_BATCH_EVENTS, MAX_EVENT_BYTES, parse_native

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def event(**overrides):
    return {"type": "cart.updated", "subscriber_id": "sub-1", **overrides}


def rejection(payload) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_native(payload, NOW)
    return caught.value


def test_a_minimal_event_gets_a_generated_id_and_the_received_time():
    [envelope] = parse_native(event(), NOW)
    assert len(envelope.event_id) == 32 and int(envelope.event_id, 16) >= 0
    assert envelope.type == "cart.updated"
    assert envelope.subscriber_id == "sub-1"
    assert envelope.occurred_at == NOW
    assert envelope.received_at == NOW
    assert envelope.source == "api"
    assert envelope.properties == {} and envelope.context == {}


def test_every_given_field_is_carried_over():
    [envelope] = parse_native(
        event(
            event_id="e-1",
            occurred_at="2026-02-28T10:00:00+02:00",
            properties={"items": 2, "cart_id": "c9"},
            context={"ip": "10.0.0.1"},
        ),
        NOW,
    )
    assert envelope.event_id == "e-1"
    assert envelope.occurred_at == datetime(2026, 2, 28, 8, 0, tzinfo=timezone.utc)
    assert envelope.properties == {"items": 2, "cart_id": "c9"}
    assert envelope.context == {"ip": "10.0.0.1"}


def test_a_naive_occurred_at_is_taken_as_utc():
    [envelope] = parse_native(event(occurred_at="2026-02-28T10:00:00"), NOW)
    assert envelope.occurred_at == datetime(2026, 2, 28, 10, 0, tzinfo=timezone.utc)


def test_a_batch_maps_every_event_in_order_with_distinct_generated_ids():
    envelopes = parse_native({"events": [event(subscriber_id=f"s{i}") for i in range(3)]}, NOW)
    assert [e.subscriber_id for e in envelopes] == ["s0", "s1", "s2"]
    assert len({e.event_id for e in envelopes}) == 3


def test_a_missing_field_inside_a_batch_is_named_with_its_index():
    events = [event() for _ in range(5)]
    del events[3]["subscriber_id"]
    error = rejection({"events": events})
    assert error.status == 422
    assert error.field == "events[3].subscriber_id"
    assert "events[3].subscriber_id" in error.error and "required" in error.error
    assert error.detail == [{"field": "events[3].subscriber_id", "message": "Field required", "type": "missing"}]


def test_every_problem_is_listed_in_detail():
    error = rejection({"events": [event(type=5), event(), event(subscriber_id="has spaces")]})
    assert [d["field"] for d in error.detail] == ["events[0].type", "events[2].subscriber_id"]
    assert error.field == "events[0].type"


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        (event(colour="red"), "colour", "Extra inputs"),
        (event(type=1), "type", "valid string"),
        (event(subscriber_id=42), "subscriber_id", "valid string"),
        (event(properties=[1, 2]), "properties", "dictionary"),
        (event(context="x"), "context", "dictionary"),
        (event(occurred_at="yesterday"), "occurred_at", "datetime"),
        (event(event_id="no spaces allowed"), "event_id", "pattern"),
        (event(type=""), "type", "pattern"),
        ({"subscriber_id": "s"}, "type", "required"),
        ({"events": [event()], "extra": 1}, "extra", "unknown field"),
        ({"events": [event(), "not an object"]}, "events[1]", "event object"),
    ],
)
def test_bad_input_is_422_naming_the_field(payload, field, words):
    error = rejection(payload)
    assert error.status == 422
    assert error.field == field
    assert words in error.error


@pytest.mark.parametrize(
    ("payload", "words"),
    [([event()], "expected a JSON object"), ({"events": {}}, "expected a JSON array"), ({"events": []}, "empty")],
)
def test_bad_body_shapes_are_422(payload, words):
    error = rejection(payload)
    assert error.status == 422 and words in error.error


def test_an_event_over_32_kib_is_413_naming_it():
    big = event(properties={"blob": "x" * MAX_EVENT_BYTES})
    error = rejection({"events": [event(), big]})
    assert error.status == 413
    assert error.field == "events[1]"
    assert "32768" in error.error


def test_a_single_event_over_32_kib_is_413():
    error = rejection(event(properties={"blob": "x" * MAX_EVENT_BYTES}))
    assert error.status == 413 and error.field == "body"


def test_an_event_of_just_under_32_kib_is_accepted():
    base = len('{"type":"cart.updated","subscriber_id":"sub-1","properties":{"blob":""}}')
    [envelope] = parse_native(event(properties={"blob": "x" * (MAX_EVENT_BYTES - base)}), NOW)
    assert len(envelope.properties["blob"]) == MAX_EVENT_BYTES - base


def test_a_batch_of_500_is_accepted_and_501_is_413_naming_the_limit():
    assert len(parse_native({"events": [event() for _ in range(MAX_BATCH_EVENTS)]}, NOW)) == 500
    error = rejection({"events": [event() for _ in range(MAX_BATCH_EVENTS + 1)]})
    assert error.status == 413
    assert error.field == "events"
    assert "at most 500" in error.error


def test_field_path_formats_indexes_and_names():
    assert field_path(("events", 3, "subscriber_id")) == "events[3].subscriber_id"
    assert field_path(("properties", "a", 0)) == "properties.a[0]"
    assert field_path(()) == ""
