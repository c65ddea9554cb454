"""Every bad input against the real app and broker: the right status, the problem named, nothing written."""

import pytest

from tests.integration.api_support import events_written, running_api

pytestmark = pytest.mark.integration

GOOD = {"type": "cart.updated", "subscriber_id": "sub-1"}
BIG = "x" * (32 * 1024)


def good_batch(n: int) -> list[dict]:
    return [{**GOOD, "event_id": f"e{i}"} for i in range(n)]


CASES = {
    "no key": dict(no_key=True, json=GOOD, status=401, words="missing API key"),
    "wrong key": dict(headers={"Authorization": "Bearer tk_not-a-key"}, json=GOOD, status=401, words="invalid API key"),
    "wrong basic user": dict(no_key=True, auth=("tk_not-a-key", ""), path="/v1/track",
                             json={"event": "X", "userId": "u"}, status=401, words="invalid API key"),
    "malformed JSON": dict(content=b'{"type": "cart.updated", "subscriber_id": ', status=422, words="invalid JSON"),
    "wrong type": dict(json={**GOOD, "subscriber_id": 123}, status=422, field="subscriber_id"),
    "wrong properties type": dict(json={**GOOD, "properties": "x"}, status=422, field="properties"),
    "missing field": dict(json={"subscriber_id": "sub-1"}, status=422, field="type"),
    "unknown field": dict(json={**GOOD, "user": "x"}, status=422, field="user"),
    "event over 32 KiB": dict(json={**GOOD, "properties": {"blob": BIG}}, status=413, field="body", words="32768"),
    "body over 500 KiB": dict(json={"events": [{**GOOD, "properties": {"b": "x" * 30000}}] * 20}, status=413,
                              words="512000"),
    "body over 500 KiB with a lying Content-Length": dict(
        content=b'{"events": [' + b" " * (500 * 1024) + b"]}", headers={"Content-Length": "64"}, status=413,
        words="exceeds 512000"),
    "batch of 501": dict(json={"events": good_batch(501)}, status=413, field="events", words="at most 500"),
    "one bad event inside a valid batch": dict(
        json={"events": [*good_batch(10), {"type": "cart.updated"}, *good_batch(5)]}, status=422,
        field="events[10].subscriber_id"),
    "one big event inside a valid batch": dict(
        json={"events": [*good_batch(3), {**GOOD, "properties": {"blob": BIG}}]}, status=413, field="events[3]"),
    "segment call without user": dict(path="/v1/track", json={"event": "X"}, status=422, field="userId"),
    "segment batch with one bad call": dict(
        path="/v1/batch",
        json={"batch": [{"type": "track", "event": "X", "userId": "u"}, {"type": "page", "userId": 5}]},
        status=422, field="batch[1].userId"),
    "segment batch with unsupported call": dict(
        path="/v1/batch", json={"batch": [{"type": "alias", "userId": "u", "previousId": "p"}]}, status=422,
        field="batch[0].type"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_refused_naming_the_problem_and_writes_nothing(kafka_settings, case):
    case = dict(case)
    status, field, words = case.pop("status"), case.pop("field", None), case.pop("words", None)
    path, no_key = case.pop("path", "/v1/events"), case.pop("no_key", False)
    with running_api(kafka_settings) as (client, _):
        if no_key:
            client.headers.pop("Authorization")
        response = client.post(path, **case)
    assert response.status_code == status, response.text
    body = response.json()
    if field is not None:
        assert body["field"] == field
        assert field in body["error"] or field == "body"
    if words is not None:
        assert words in body["error"]
    if status == 401:
        assert response.headers["WWW-Authenticate"]
    assert events_written(kafka_settings) == 0
