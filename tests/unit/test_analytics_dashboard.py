"""The dashboard's HTTP surface without a worker: who may read, what the page and endpoints serve.

`run_query` is replaced by a recorder here (the real path, through the worker's port into chDB, is
covered by tests/e2e/test_analytics_dashboard.py in a browser).
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from connectors.analytics_queries import DASHBOARD_QUERIES, render
from connectors.api import dashboard
from connectors.api.app import create_api
from infra.analytics_client import AnalyticsQueryError
from infra.api_keys import ApiKeyStore
from tests.unit.test_api_http import FakeProducer

LOOPBACK = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.9", 50000)


@pytest.fixture
def app_and_key(settings, monkeypatch):
    calls: list[str] = []

    def fake_run_query(_settings, sql):
        calls.append(sql)
        return {"columns": ["journey_id", "entered"], "rows": [["welcome", 3]]}

    monkeypatch.setattr(dashboard, "run_query", fake_run_query)
    key = ApiKeyStore(settings).create("dash")
    return create_api(settings, FakeProducer()), key, calls


def test_page_and_assets_are_served_without_credentials(app_and_key):
    app, _, _ = app_and_key
    client = TestClient(app, client=REMOTE)
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/dashboard/static/dashboard.js" in page.text and "http://" not in page.text and "https://" not in page.text
    script = client.get("/dashboard/static/dashboard.js")
    assert script.status_code == 200 and "fetch(" in script.text
    assert client.get("/dashboard/static/dashboard.css").status_code == 200


def test_unknown_asset_is_404_naming_it(app_and_key):
    app, _, _ = app_and_key
    response = TestClient(app, client=LOOPBACK).get("/dashboard/static/..%2Fdashboard.py")
    assert response.status_code == 404


def test_loopback_without_key_may_read_and_gets_the_named_querys_sql(app_and_key):
    app, _, calls = app_and_key
    response = TestClient(app, client=LOOPBACK).get("/dashboard/api/query/journey_funnel?days=7")
    assert response.status_code == 200
    assert response.json() == {"name": "journey_funnel", "columns": ["journey_id", "entered"], "rows": [["welcome", 3]]}
    assert calls == [render("journey_funnel", days=7)]


def test_remote_without_key_is_refused(app_and_key):
    app, _, calls = app_and_key
    response = TestClient(app, client=REMOTE).get("/dashboard/api/query/journey_funnel")
    assert response.status_code == 401 and response.json()["field"] == "Authorization"
    assert calls == []


def test_loopback_behind_a_proxy_needs_a_key(app_and_key):
    app, _, calls = app_and_key
    client = TestClient(app, client=LOOPBACK)
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        assert client.get("/dashboard/api/queries", headers={header: "198.51.100.7"}).status_code == 401
    assert calls == []


def test_remote_with_key_may_read(app_and_key):
    app, key, _ = app_and_key
    client = TestClient(app, client=REMOTE, headers={"Authorization": f"Bearer {key}"})
    listing = client.get("/dashboard/api/queries").json()
    assert listing["panels"] == list(DASHBOARD_QUERIES)
    assert {q["name"] for q in listing["queries"]} >= set(DASHBOARD_QUERIES)
    assert client.get("/dashboard/api/query/reputation_latest").status_code == 200


def test_wrong_key_is_refused_even_from_loopback(app_and_key):
    app, _, calls = app_and_key
    response = TestClient(app, client=LOOPBACK).get(
        "/dashboard/api/query/journey_funnel", headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401 and calls == []


def test_unknown_query_is_404_and_bad_parameter_is_422(app_and_key):
    app, _, calls = app_and_key
    client = TestClient(app, client=LOOPBACK)
    missing = client.get("/dashboard/api/query/drop_everything")
    assert missing.status_code == 404 and "unknown query 'drop_everything'" in missing.json()["error"]
    bad_days = client.get("/dashboard/api/query/journey_funnel?days=-1")
    assert bad_days.status_code == 422 and "days" in bad_days.json()["error"]
    not_a_param = client.get("/dashboard/api/query/journey_funnel?limit=5")
    assert not_a_param.status_code == 422 and "no parameter limit" in not_a_param.json()["error"]
    assert calls == []


def test_worker_unreachable_is_502_with_the_reason(app_and_key, monkeypatch):
    app, _, _ = app_and_key

    def down(_settings, _sql):
        raise AnalyticsQueryError("cannot reach the worker at http://127.0.0.1:1/analytics/sql/")

    monkeypatch.setattr(dashboard, "run_query", down)
    response = TestClient(app, client=LOOPBACK).get("/dashboard/api/query/journey_funnel")
    assert response.status_code == 502 and "cannot reach the worker" in response.json()["error"]
