"""Segment-spec calls (track, identify, page, batch) mapped to EventEnvelope."""

from datetime import datetime, timezone

import pytest

from connectors.api.errors import ApiError
from connectors.api.segment_compat import parse_segment_batch, parse_segment_call
from domain.events import stable_id

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def one(call_type, payload):
    [envelope] = parse_segment_call(call_type, payload, NOW)
    return envelope


def test_track_maps_event_properties_and_ids():
    envelope = one(
        "track",
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "u-1",
            "anonymousId": "anon-1",
            "messageId": "ajs-next-1700000000000-abc",
            "timestamp": "2026-02-28T09:30:00.000Z",
            "properties": {"revenue": 42.5},
            "context": {"library": {"name": "analytics-python"}},
            "integrations": {"All": True},
            "sentAt": "2026-02-28T09:30:01.000Z",
        },
    )
    assert envelope.type == "Order Completed"
    assert envelope.subscriber_id == "u-1"
    assert envelope.event_id == "ajs-next-1700000000000-abc"
    assert envelope.occurred_at == datetime(2026, 2, 28, 9, 30, tzinfo=timezone.utc)
    assert envelope.received_at == NOW
    assert envelope.source == "segment"
    assert envelope.properties == {"revenue": 42.5}
    assert envelope.context == {"library": {"name": "analytics-python"}}


def test_anonymous_id_is_used_when_there_is_no_user_id():
    assert one("track", {"event": "Viewed", "anonymousId": "anon-1"}).subscriber_id == "anon-1"
    assert one("track", {"event": "Viewed", "userId": "", "anonymousId": "anon-2"}).subscriber_id == "anon-2"
    assert one("track", {"event": "Viewed", "userId": None, "anonymousId": "anon-3"}).subscriber_id == "anon-3"


def test_without_message_id_an_id_is_generated():
    assert len(one("track", {"event": "Viewed", "userId": "u"}).event_id) == 32


def test_a_message_id_outside_our_id_syntax_is_hashed_stably():
    envelope = one("track", {"event": "Viewed", "userId": "u", "messageId": "{odd id with spaces}"})
    assert envelope.event_id == stable_id("segment", "{odd id with spaces}")


def test_occurred_at_falls_back_to_original_timestamp_then_to_now():
    original = "2026-02-27T00:00:00Z"
    assert one("track", {"event": "V", "userId": "u", "originalTimestamp": original}).occurred_at == datetime(
        2026, 2, 27, tzinfo=timezone.utc
    )
    assert one("track", {"event": "V", "userId": "u"}).occurred_at == NOW
    both = one("track", {"event": "V", "userId": "u", "originalTimestamp": original, "timestamp": "2026-02-26T00:00:00Z"})
    assert both.occurred_at == datetime(2026, 2, 26, tzinfo=timezone.utc)


def test_identify_puts_traits_into_context_merged_with_given_traits():
    envelope = one(
        "identify",
        {
            "userId": "u-1",
            "traits": {"email": "a@example.com", "plan": "pro"},
            "context": {"ip": "10.0.0.1", "traits": {"plan": "free", "country": "US"}},
        },
    )
    assert envelope.type == "identify"
    assert envelope.context == {"ip": "10.0.0.1", "traits": {"plan": "pro", "country": "US", "email": "a@example.com"}}
    assert envelope.traits["email"] == "a@example.com"
    assert envelope.properties == {}


def test_page_includes_name_and_category_in_properties():
    envelope = one("page", {"userId": "u", "name": "Pricing", "category": "Docs", "properties": {"path": "/pricing"}})
    assert envelope.type == "page"
    assert envelope.properties == {"path": "/pricing", "name": "Pricing", "category": "Docs"}
    assert one("page", {"userId": "u"}).properties == {}


def test_batch_maps_each_call_type_and_shares_the_top_level_context():
    envelopes = parse_segment_batch(
        {
            "batch": [
                {"type": "track", "event": "Signed Up", "userId": "u1", "context": {"page": {"path": "/"}}},
                {"type": "identify", "userId": "u1", "traits": {"name": "Ada"}},
                {"type": "page", "anonymousId": "a2", "name": "Home"},
            ],
            "context": {"library": {"name": "analytics-node"}, "page": {"path": "/default"}},
            "writeKey": "ignored",
            "sentAt": "2026-02-28T09:30:01.000Z",
        },
        NOW,
    )
    assert [(e.type, e.subscriber_id) for e in envelopes] == [("Signed Up", "u1"), ("identify", "u1"), ("page", "a2")]
    assert envelopes[0].context == {"library": {"name": "analytics-node"}, "page": {"path": "/"}}
    assert envelopes[1].context["traits"] == {"name": "Ada"}
    assert envelopes[1].context["library"] == {"name": "analytics-node"}
    assert envelopes[2].properties == {"name": "Home"}
    assert {e.source for e in envelopes} == {"segment"}


def rejection(call):
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize(
    ("call_type", "payload", "field"),
    [
        ("track", {"event": "V"}, "userId"),
        ("track", {"event": "V", "userId": "", "anonymousId": ""}, "userId"),
        ("track", {"userId": "u"}, "event"),
        ("track", {"event": "V", "userId": 7}, "userId"),
        ("track", {"event": "V", "userId": "has space"}, "userId"),
        ("track", {"event": "V", "userId": "u", "properties": "x"}, "properties"),
        ("track", {"event": "V", "userId": "u", "timestamp": "soon"}, "timestamp"),
        ("track", {"event": "V", "userId": "u", "messageId": 12}, "messageId"),
        ("track", {"type": "identify", "event": "V", "userId": "u"}, "type"),
        ("identify", {"userId": "u", "traits": []}, "traits"),
        ("page", {"userId": "u", "name": 3}, "name"),
    ],
)
def test_bad_single_calls_are_422_naming_the_field(call_type, payload, field):
    error = rejection(lambda: parse_segment_call(call_type, payload, NOW))
    assert error.status == 422
    assert error.field == field


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"batch": [{"type": "track", "event": "V", "userId": "u"}, {"type": "track", "event": "V"}]}, "batch[1].userId"),
        ({"batch": [{"type": "screen", "userId": "u"}]}, "batch[0].type"),
        ({"batch": [{"event": "V", "userId": "u"}]}, "batch[0].type"),
        ({"batch": [{"type": ["track"], "userId": "u"}]}, "batch[0].type"),
        ({"batch": []}, "batch"),
        ({"batch": {}}, "batch"),
        ({"events": []}, "batch"),
        ({"batch": [{"type": "page", "userId": "u"}], "context": []}, "context"),
    ],
)
def test_bad_batches_are_422_naming_the_field(payload, field):
    error = rejection(lambda: parse_segment_batch(payload, NOW))
    assert error.status == 422
    assert error.field == field


def test_a_segment_batch_of_501_is_413():
    error = rejection(lambda: parse_segment_batch({"batch": [{"type": "page", "userId": "u"}] * 501}, NOW))
    assert error.status == 413 and "at most 500" in error.error
