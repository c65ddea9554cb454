"""The ingest API against the real broker: what it accepts really lands on the events topic."""

import re
import uuid

import pytest
from fastapi.testclient import TestClient

from connectors.api.app import create_api

from tests.integration.api_support import events_on_topic, events_written, running_api

pytestmark = pytest.mark.integration


@pytest.fixture
def api(kafka_settings):
    with running_api(kafka_settings) as (client, key):
        yield client, key


def test_an_accepted_event_is_on_the_topic_keyed_by_subscriber(api, kafka_settings):
    client, _ = api
    response = client.post(
        "/v1/events",
        json={"type": "cart.updated", "subscriber_id": "sub-1", "properties": {"items": 2}, "context": {"ip": "10.1.1.1"}},
    )
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1 and body["duplicates"] == 0
    [(key, envelope)] = events_on_topic(kafka_settings, expect=1)
    assert key == b"sub-1"
    assert envelope.event_id == body["event_ids"][0]
    assert (envelope.type, envelope.subscriber_id, envelope.source) == ("cart.updated", "sub-1", "api")
    assert envelope.properties == {"items": 2} and envelope.context["ip"].startswith("pd1.")  # sealed: personal data
    assert envelope.occurred_at == envelope.received_at


def test_a_batch_of_500_lands_completely(api, kafka_settings):
    client, _ = api
    events = [{"event_id": f"e{i}", "type": "page.viewed", "subscriber_id": f"s{i % 37}"} for i in range(500)]
    response = client.post("/v1/events", json={"events": events})
    assert response.status_code == 202
    assert response.json()["accepted"] == 500
    landed = events_on_topic(kafka_settings, expect=500)
    assert sorted(e.event_id for _, e in landed) == sorted(f"e{i}" for i in range(500))
    assert all(key == e.subscriber_id.encode() for key, e in landed)


def test_segment_calls_land_with_the_segment_mapping(api, kafka_settings):
    client, key = api
    client.headers.pop("Authorization")  # Segment SDKs send the write key as the Basic user
    calls = [
        ("/v1/track", {"event": "Order Completed", "userId": "u1", "messageId": "m1", "properties": {"total": 9}}),
        ("/v1/identify", {"userId": "u1", "messageId": "m2", "traits": {"plan": "pro"}}),
        ("/v1/page", {"anonymousId": "a1", "messageId": "m3", "name": "Pricing", "timestamp": "2026-01-02T03:04:05Z"}),
        (
            "/v1/batch",
            {
                "batch": [
                    {"type": "track", "event": "Signed Up", "userId": "u2", "messageId": "m4"},
                    {"type": "identify", "userId": "u2", "messageId": "m5", "traits": {"email": "x@example.com"}},
                ],
                "context": {"library": {"name": "analytics-python"}},
            },
        ),
    ]
    for path, payload in calls:
        response = client.post(path, json=payload, auth=(key, ""))
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True}
    landed = {e.event_id: (key, e) for key, e in events_on_topic(kafka_settings, expect=5)}
    assert set(landed) == {"m1", "m2", "m3", "m4", "m5"}
    assert {e.source for _, e in landed.values()} == {"segment"}
    assert landed["m1"][0] == b"u1" and landed["m1"][1].type == "Order Completed"
    assert landed["m1"][1].properties == {"total": 9}
    assert landed["m2"][1].type == "identify" and landed["m2"][1].traits == {"plan": "pro"}
    assert landed["m3"][0] == b"a1" and landed["m3"][1].properties == {"name": "Pricing"}
    assert landed["m3"][1].occurred_at.isoformat() == "2026-01-02T03:04:05+00:00"
    assert landed["m4"][1].context == {"library": {"name": "analytics-python"}}
    # Personal data lands sealed with the subscriber's key (connectors/crypto.py); the domain stays clear.
    email = landed["m5"][1].traits["email"]
    assert email.startswith("pd1.") and email.endswith("@example.com") and "x@example.com" not in email


def test_a_repeated_event_id_lands_once(api, kafka_settings):
    client, _ = api
    event = {"event_id": "dup-1", "type": "order.placed", "subscriber_id": "s1"}
    first = client.post("/v1/events", json=event)
    again = client.post("/v1/events", json={"events": [event, event, {**event, "event_id": "dup-2"}]})
    assert first.json()["accepted"] == 1
    assert again.status_code == 202
    assert again.json() == {"accepted": 1, "duplicates": 2, "event_ids": ["dup-1", "dup-1", "dup-2"]}
    segment_retry = client.post("/v1/track", json={"event": "X", "userId": "s1", "messageId": "dup-1"})
    assert segment_retry.status_code == 200
    assert events_written(kafka_settings) == 2
    assert sorted(e.event_id for _, e in events_on_topic(kafka_settings)) == ["dup-1", "dup-2"]


def metric(text, name):
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_counters_move(api):
    client, _ = api
    client.post("/v1/events", json={"events": [{"event_id": "m1", "type": "t", "subscriber_id": "s"}] * 2})
    client.post("/v1/events", json={"type": "t"})
    text = client.get("/metrics").text
    assert metric(text, "tidings_events_accepted_total") == 1
    assert metric(text, "tidings_events_duplicate_total") == 1
    assert metric(text, 'tidings_events_rejected_total{reason="invalid"}') == 1
    assert metric(text, 'tidings_api_requests_total{path="/v1/events",status="202"}') == 1
    assert metric(text, 'tidings_api_requests_total{path="/v1/events",status="422"}') == 1
    assert metric(text, "tidings_produce_latency_seconds_count") == 1
    assert metric(text, 'tidings_produce_latency_seconds_bucket{le="+Inf"}') == 1
    assert metric(text, "tidings_produce_latency_seconds_sum") > 0


def test_healthz_reports_kafka_reachable(api):
    client, _ = api
    response = client.get("/healthz", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "kafka": True}


def test_an_unknown_path_is_counted_under_one_label(api):
    client, _ = api
    client.get(f"/{uuid.uuid4().hex}")
    assert 'tidings_api_requests_total{path="other",status="404"} 1' in client.get("/metrics").text


def test_the_app_closes_the_producer_it_made_on_shutdown(kafka_settings):
    app = create_api(kafka_settings)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert not app.state.producer.closed
    assert app.state.producer.closed
