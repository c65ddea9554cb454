"""Consent routes through the real API app on a real SQLite event store (no broker needed: the relay
thread only starts with the app's lifespan, which these tests do not enter)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from connectors.api.app import create_api
from connectors.api.consent import link
from domain import tokens
from infra.api_keys import ApiKeyStore
from infra.token_keys import load_token_keys, rotate

pytestmark = pytest.mark.integration


class NoKafka:
    def reachable(self, timeout: float = 2.0) -> bool:
        return False

    def close(self) -> None:
        pass


@pytest.fixture
def api(settings):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = ApiKeyStore(settings).create("t")
    client = TestClient(create_api(settings, producer=NoKafka()))  # type: ignore[arg-type]
    client.headers["Authorization"] = f"Bearer {key}"
    return client


def create(api, sid="s1", **extra):
    response = api.post("/v1/subscribers", json={"subscriber_id": sid, "email": f"{sid}@example.com", **extra})
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_get_shows_a_confirmation_page_and_never_unsubscribes(api):
    body = create(api)
    path = body["links"]["unsubscribe"].split("8080", 1)[1]
    page = api.get(path, headers={"Authorization": ""})
    assert page.status_code == 200 and "<form method=\"post\"" in page.text
    assert api.get("/v1/subscribers/s1").json()["globally_unsubscribed"] is False


def test_one_click_post_unsubscribes_without_auth_or_redirect(api):
    path = create(api)["links"]["unsubscribe"].split("8080", 1)[1]
    response = api.post(path, content="List-Unsubscribe=One-Click", follow_redirects=False,
                        headers={"Authorization": "", "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and "set-cookie" not in response.headers
    shown = api.get("/v1/subscribers/s1").json()
    assert shown["globally_unsubscribed"] is True
    assert shown["history"][-1]["actor"] == "link:one-click"


def test_links_signed_before_a_rotation_keep_working(api, settings):
    path = create(api)["links"]["unsubscribe"].split("8080", 1)[1]
    rotate(settings)
    assert api.post(path, headers={"Authorization": ""}).status_code == 200


def test_double_opt_in_and_preferences(api, settings):
    body = create(api, lists=["news", "offers"], double_opt_in=True)
    confirm = body["links"]["confirm"]["news"].split("8080", 1)[1]
    assert api.get(confirm).status_code == 200
    assert api.get("/v1/subscribers/s1").json()["lists"]["news"] == "pending"
    assert api.post(confirm).status_code == 200
    assert api.get("/v1/subscribers/s1").json()["lists"]["news"] == "subscribed"
    prefs = body["links"]["preferences"].split("8080", 1)[1]
    assert "news" in api.get(prefs).text
    saved = api.post(prefs, content="list=news&marketing=on&submitted=1",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert saved.status_code == 200
    assert api.get("/v1/subscribers/s1").json()["lists"] == {"news": "subscribed", "offers": "unsubscribed"}


def test_erasure_removes_personal_data_and_refuses_changes(api):
    create(api)
    assert api.delete("/v1/subscribers/s1").json() == {"subscriber_id": "s1", "erased": True}
    shown = api.get("/v1/subscribers/s1").json()
    assert shown["email"] is None and shown["erased"] is True
    assert api.post("/v1/subscribers", json={"subscriber_id": "s1", "email": "s1@example.com"}).status_code == 409
    assert api.delete("/v1/subscribers/nobody").status_code == 404


@pytest.mark.parametrize(
    "body,field",
    [({"subscriber_id": "s1"}, "email"), ({"subscriber_id": "s 1", "email": "a@b.co"}, "subscriber_id"),
     ({"subscriber_id": "s1", "email": "nope"}, "email"), ({"subscriber_id": "s1", "email": "a@b.co", "x": 1}, "x")],
)
def test_bad_subscriber_bodies_name_the_field(api, body, field):
    response = api.post("/v1/subscribers", json=body)
    assert response.status_code == 422 and response.json()["field"] == field


def test_consent_routes_need_an_api_key(api):
    assert api.post("/v1/subscribers", json={}, headers={"Authorization": ""}).status_code == 401


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutation=st.sampled_from(["forged", "tampered", "expired", "other-purpose", "garbage"]),
    position=st.integers(min_value=0, max_value=10_000),
    garbage=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=200),
)
def test_forged_tampered_or_expired_tokens_get_4xx_and_change_nothing(api, settings, mutation, position, garbage):
    if api.get("/v1/subscribers/victim").status_code == 404:
        create(api, "victim", lists=["news"], double_opt_in=True)
    before = api.get("/v1/subscribers/victim").json()["version"]
    keys = load_token_keys(settings)
    now = datetime.now(timezone.utc)
    good = tokens.sign("unsubscribe", "victim", key_id=keys.current_id, key=keys.current, now=now, ttl=timedelta(days=1))
    if mutation == "forged":
        token = tokens.sign("unsubscribe", "victim", key_id=keys.current_id, key=b"x" * 32, now=now, ttl=timedelta(days=1))
    elif mutation == "tampered":
        i = position % len(good)
        token = good[:i] + ("A" if good[i] != "A" else "B") + good[i + 1:]
    elif mutation == "expired":
        token = tokens.sign("unsubscribe", "victim", key_id=keys.current_id, key=keys.current,
                            now=now - timedelta(days=2), ttl=timedelta(days=1))
    elif mutation == "other-purpose":
        token = tokens.sign("preferences", "victim", key_id=keys.current_id, key=keys.current, now=now,
                            ttl=timedelta(days=1))
    else:
        token = garbage
    for method, prefix in (("POST", "/u/"), ("POST", "/c/"), ("POST", "/p/"), ("GET", "/u/")):
        if token == good or (mutation == "other-purpose" and prefix == "/p/"):
            continue  # (a preferences token is the right credential for /p/)  # a tampered base64 tail can decode to the same bytes: that is the same token
        response = api.request(method, prefix + token, headers={"Authorization": ""},
                               content="list=news&submitted=1")
        assert 400 <= response.status_code < 500, (mutation, prefix, response.status_code)
    assert api.get("/v1/subscribers/victim").json()["version"] == before
