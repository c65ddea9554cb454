"""Feedback routes of the real API against the real broker: click, pixel, generic webhook, SES/SNS."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from connectors.feedback.keys import tracking_signer
from connectors.feedback.ses import SnsVerifier
from connectors.feedback.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_for
from domain.events import DeliveryEvent
from domain.tracking import Signer, track_html
from infra.topics import Topic
from tests.integration.api_support import running_api
from tests.kafka_helpers import read_topic
from tests.unit import test_feedback_ses as ses_fixtures

pytestmark = pytest.mark.integration

SECRET = "integration-webhook-secret"


def delivered(settings) -> list[DeliveryEvent]:  # type: ignore[no-untyped-def]
    return [DeliveryEvent.from_bytes(v) for _, v in read_topic(settings, Topic.DELIVERY, timeout=5)]


def tracked_links(settings) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    out = track_html('<a href="https://shop.test/cart?x=1">c</a></body>', signer=tracking_signer(settings),
                     public_url="http://testserver", intent_id="i-1", subscriber_id="s-1",
                     expires_at=datetime.now(timezone.utc) + timedelta(days=1))
    click = out.html.split('href="http://testserver', 1)[1].split('"', 1)[0]
    pixel = out.html.split('src="http://testserver', 1)[1].split('"', 1)[0]
    return click, pixel


def test_click_redirects_only_to_the_signed_url_and_opens_count_once(kafka_settings) -> None:  # type: ignore[no-untyped-def]
    with running_api(kafka_settings) as (client, _):
        click, pixel = tracked_links(kafka_settings)
        response = client.get(click, follow_redirects=False)
        assert response.status_code == 302 and response.headers["location"] == "https://shop.test/cart?x=1"
        assert client.get(click, follow_redirects=False).status_code == 302  # a second click: same event id

        forged = Signer({"k1": b"x" * 32}, "k1").sign("click", {"i": "i-1", "s": "s-1", "l": "x", "u": "https://evil.test/"},
                                                      datetime.now(timezone.utc) + timedelta(days=1))
        token = click.rsplit("/", 1)[1]
        head, kid, body, sig = token.split(".")
        swapped = f"{head}.{kid}.{forged.split('.')[2]}.{sig}"  # evil target under the genuine signature
        for bad in (f"/t/c/{forged}", f"/t/c/{swapped}", "/t/c/not-a-token", "/t/c/" + pixel.rsplit("/", 1)[1][:-4]):
            refused = client.get(bad, follow_redirects=False)
            assert refused.status_code == 404 and "location" not in refused.headers, bad

        for _ in range(3):
            gif = client.get(pixel)
            assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
        assert client.get("/t/o/v1.k1.forged.sig.gif").headers["content-type"] == "image/gif"

    events = delivered(kafka_settings)
    assert sorted(e.kind for e in events) == ["clicked", "opened"]
    assert {(e.intent_id, e.subscriber_id) for e in events} == {("i-1", "s-1")}


def signed(body: dict, ts: float | None = None) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    stamp = str(int(ts if ts is not None else time.time()))
    return raw, {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature_for(SECRET, stamp, raw), "content-type": "application/json"}


def test_generic_webhook_is_signed_not_replayable_and_retries_count_once(kafka_settings) -> None:  # type: ignore[no-untyped-def]
    settings = kafka_settings.model_copy(update={"webhook_secret": SECRET})
    body = {"events": [{"id": "esp-1", "type": "complained", "intent_id": "i-2", "subscriber_id": "s-2"},
                       {"id": "esp-2", "type": "unsubscribed", "intent_id": "i-3", "subscriber_id": "s-3"}]}
    with running_api(settings) as (client, _):
        raw, headers = signed(body)
        first = client.post("/v1/webhooks/generic", content=raw, headers=headers)
        assert first.status_code == 202 and first.json()["written"] == 2
        assert client.post("/v1/webhooks/generic", content=raw, headers=headers).status_code == 401  # replay
        raw2, headers2 = signed(body, time.time() + 1)  # the ESP's own retry: new signature, same event ids
        assert client.post("/v1/webhooks/generic", content=raw2, headers=headers2).json()["written"] == 0
        assert client.post("/v1/webhooks/generic", content=raw).status_code == 401  # unsigned
        stale_raw, stale = signed(body, time.time() - 3600)
        assert client.post("/v1/webhooks/generic", content=stale_raw, headers=stale).status_code == 401
        bad_raw, bad_headers = signed({"events": [{"id": "x", "type": "opened"}]})
        invalid = client.post("/v1/webhooks/generic", content=bad_raw, headers=bad_headers)
        assert invalid.status_code == 422 and "intent_id" in invalid.json()["error"]
    events = delivered(settings)
    assert sorted((e.kind, e.subscriber_id) for e in events) == [("complained", "s-2"), ("unsubscribed", "s-3")]


def test_ses_notifications_must_be_signed_by_sns(kafka_settings) -> None:  # type: ignore[no-untyped-def]
    ca, leaf, leaf_key, _, _ = ses_fixtures.make_pki(datetime.now(timezone.utc))
    with running_api(kafka_settings) as (client, _):
        client.app.state.feedback_sns = SnsVerifier(fetch_pem=lambda url: ses_fixtures.pem(leaf), roots=[ca])
        message = ses_fixtures.sns_message(leaf_key, "2", ref_signer=tracking_signer(kafka_settings))
        ok = client.post("/v1/webhooks/ses", content=json.dumps(message))
        assert ok.status_code == 200, ok.text
        assert client.post("/v1/webhooks/ses", content=json.dumps(message)).json()["written"] == 0  # SNS retry
        unsigned = {k: v for k, v in message.items() if k not in ("Signature", "SignatureVersion")}
        assert client.post("/v1/webhooks/ses", content=json.dumps(unsigned)).status_code == 401
        tampered = dict(message, Message=message["Message"].replace("gone@", "other@"))
        assert client.post("/v1/webhooks/ses", content=json.dumps(tampered)).status_code == 401
    [event] = delivered(kafka_settings)
    assert (event.kind, event.bounce_type, event.smtp_code) == ("bounced", "hard", 550)
