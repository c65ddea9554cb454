"""Request-level checks through the app with a fake producer: auth, body limits, JSON, error shape.

The fake only records what would be produced; the same cases run against the real broker in
tests/integration/test_api_rejections.py.
"""

import base64

import pytest
from fastapi.testclient import TestClient

from connectors.api.app import create_api
from connectors.api.auth import key_from_header
from connectors.api.body import parse_json
from connectors.api.errors import ApiError
from connectors.api.ingest import MAX_BODY_BYTES
from connectors.kafka_producer import ProduceFailed
from infra.api_keys import ApiKeyStore


class FakeProducer:
    def __init__(self, fail: str | None = None):
        self.records = []
        self.fail = fail

    async def produce_all(self, records):
        if self.fail:
            raise ProduceFailed(self.fail)
        self.records.extend(records)

    def reachable(self, timeout=2.0):
        return self.fail is None


@pytest.fixture
def api(settings):
    producer = FakeProducer()
    key = ApiKeyStore(settings).create("test")
    client = TestClient(create_api(settings, producer), headers={"Authorization": f"Bearer {key}"})
    return client, producer, key


EVENT = {"type": "cart.updated", "subscriber_id": "s1"}


def test_basic_auth_with_the_key_as_user_is_accepted(api):
    client, producer, key = api
    client.headers.pop("Authorization")
    response = client.post("/v1/events", json=EVENT, auth=(key, ""))
    assert response.status_code == 202
    assert len(producer.records) == 1


@pytest.mark.parametrize(
    ("authorization", "words"),
    [
        (None, "missing API key"),
        ("Bearer tk_wrong", "invalid API key"),
        ("Basic !!!", "malformed"),
        ("Token abc", "unsupported"),
        ("Bearer", "unsupported"),
        ("Basic " + base64.b64encode(b":password").decode(), "unsupported"),
    ],
)
def test_missing_or_wrong_credentials_are_401_with_a_challenge(api, authorization, words):
    client, producer, _ = api
    headers = {"Authorization": authorization} if authorization else {}
    client.headers.pop("Authorization")
    response = client.post("/v1/events", json=EVENT, headers=headers)
    assert response.status_code == 401
    assert "Bearer" in response.headers["WWW-Authenticate"]
    assert words in response.json()["error"]
    assert producer.records == []


def test_a_body_declared_too_large_is_refused_before_reading(api):
    client, producer, _ = api
    response = client.post("/v1/events", content=b"{}", headers={"Content-Length": str(MAX_BODY_BYTES + 1)})
    assert response.status_code == 413
    assert "declares" in response.json()["error"]


def test_a_body_larger_than_its_content_length_claims_is_still_413(api):
    client, producer, _ = api
    body = b'{"events": [' + b" " * MAX_BODY_BYTES + b"]}"
    response = client.post("/v1/events", content=body, headers={"Content-Length": "100"})
    assert response.status_code == 413
    assert "exceeds 512000 bytes" in response.json()["error"]
    assert producer.records == []


def test_a_chunked_body_over_the_limit_is_413(api):
    client, producer, _ = api
    chunks = (b" " * 65536 for _ in range(10))
    response = client.post("/v1/events", content=chunks)
    assert response.status_code == 413
    assert producer.records == []


def test_a_malformed_content_length_is_400(api):
    client, _, _ = api
    response = client.post("/v1/events", content=b"{}", headers={"Content-Length": "ten"})
    assert response.status_code == 400


def test_malformed_json_is_422_naming_invalid_json(api):
    client, producer, _ = api
    response = client.post("/v1/events", content=b'{"type": "x", ')
    assert response.status_code == 422
    assert response.json()["error"].startswith("invalid JSON")
    assert response.json()["field"] == "body"
    assert producer.records == []


@pytest.mark.parametrize(
    ("raw", "words"),
    [(b"", "empty"), (b"\xff\xfe\x00", "invalid JSON"), (b'{"a": NaN}', "NaN"), (b"[" * 100000, "invalid JSON")],
)
def test_unparseable_bodies_name_invalid_json(raw, words):
    with pytest.raises(ApiError) as caught:
        parse_json(raw)
    assert caught.value.status == 422
    assert words in caught.value.error


def test_a_validation_error_has_error_field_and_detail(api):
    client, producer, _ = api
    response = client.post("/v1/events", json={"events": [EVENT, EVENT, {"type": "x"}]})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "events[2].subscriber_id"
    assert "events[2].subscriber_id" in body["error"]
    assert body["detail"][0]["field"] == "events[2].subscriber_id"
    assert producer.records == []


def test_the_segment_endpoints_answer_success(api):
    client, producer, key = api
    response = client.post("/v1/track", json={"event": "Viewed", "userId": "u"}, auth=(key, ""))
    assert response.status_code == 200 and response.json() == {"success": True}
    assert len(producer.records) == 1


def test_kafka_failure_is_503_naming_the_problem_and_the_ids(settings):
    key = ApiKeyStore(settings).create("test")
    client = TestClient(create_api(settings, FakeProducer(fail="Broker: Not enough in-sync replicas")))
    response = client.post("/v1/events", json={**EVENT, "event_id": "e1"}, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 503
    assert "Not enough in-sync replicas" in response.json()["error"]
    assert response.json()["event_ids"] == ["e1"]
    assert response.headers["Retry-After"] == "1"


def test_healthz_and_metrics_need_no_key(api):
    client, _, _ = api
    client.headers.pop("Authorization")
    assert client.get("/healthz").json() == {"status": "ok", "kafka": True}
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_a_given_request_id_is_echoed_and_a_bad_one_replaced(api):
    client, _, _ = api
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    assert len(client.get("/healthz", headers={"X-Request-ID": "x" * 200}).headers["X-Request-ID"]) == 32


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer tk_abc", "tk_abc"),
        ("bearer   tk_abc ", "tk_abc"),
        ("Basic " + base64.b64encode(b"tk_abc:").decode(), "tk_abc"),
        ("Basic " + base64.b64encode(b"tk_abc:ignored").decode(), "tk_abc"),
    ],
)
def test_the_key_is_taken_from_bearer_or_basic(header, key):
    assert key_from_header(header) == key


def test_run_api_serves_the_app_on_the_configured_address(settings, monkeypatch):
    import uvicorn

    import connectors.api.app as app_module
    from connectors.api import run_api

    served = {}
    monkeypatch.setattr(app_module, "KafkaProducer", lambda _settings: FakeProducer())
    monkeypatch.setattr(app_module, "configure_logging", lambda *args: None)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    run_api(settings.model_copy(update={"api_host": "127.0.0.1", "api_port": 18123}))
    assert (served["host"], served["port"]) == ("127.0.0.1", 18123)
    assert any(getattr(route, "path", "") == "/v1/events" for route in served["app"].routes)
