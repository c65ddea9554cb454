import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import BaseModel

from connectors.analytics_schema import MIGRATIONS, TABLES, column_names
from connectors.clickhouse import QueryRefused, json_value, read_only_statement
from domain.events import (
    ConsentChanged,
    DeliveryEvent,
    EventEnvelope,
    ReputationSnapshot,
    SegmentMembershipChanged,
    SendIntent,
)
from domain.reputation import ReputationChanged
from projections.analytics_rows import mask_emails, row_for, rows_by_table

NOW = datetime(2026, 11, 27, 12, 30, 15, 123000, tzinfo=timezone.utc)


def event(**overrides) -> EventEnvelope:
    fields = dict(
        event_id="e1",
        type="order.placed",
        subscriber_id="s1",
        occurred_at=NOW,
        received_at=NOW + timedelta(seconds=1),
        properties={"total": 42, "items": [{"sku": "a"}]},
        context={"ip": "10.0.0.1"},
    )
    return EventEnvelope(**(fields | overrides))


def intent() -> SendIntent:
    return SendIntent(
        intent_id="i1",
        subscriber_id="s1",
        journey_id="abandoned-cart",
        journey_version=3,
        step_id="send-1",
        template_id="cart-reminder",
        to="bob@example.com",
        variables={"first_name": "Bob", "email": "bob@example.com"},
        trigger_event_id="e1",
        created_at=NOW,
        transactional=True,
        priority=5,
    )


def delivery(**overrides) -> DeliveryEvent:
    fields = dict(
        delivery_id="d1",
        intent_id="i1",
        subscriber_id="s1",
        kind="bounced",
        occurred_at=NOW,
        sending_domain="news.tidings.test",
        recipient_domain="example.com",
        smtp_code=550,
        enhanced_status="5.1.1",
        bounce_type="hard",
        attempt=2,
        detail="550 5.1.1 <bob@example.com>: Recipient address rejected",
    )
    return DeliveryEvent(**(fields | overrides))


def segment_change() -> SegmentMembershipChanged:
    return SegmentMembershipChanged(
        change_id="c1",
        segment_id="vip",
        segment_version=2,
        subscriber_id="s1",
        change="entered",
        occurred_at=NOW,
        cause_event_ids=["e1", "e2"],
    )


def snapshot() -> ReputationSnapshot:
    return ReputationSnapshot(
        sending_domain="news.tidings.test", provider="gmail", sent=10, accepted=9, bounced=1, updated_at=NOW
    )


def scored_snapshot() -> ReputationSnapshot:
    """What the reputation stage publishes (projections/reputation_counts.snapshot)."""
    day = {"sent": 600, "accepted": 590, "hard_bounced": 8, "soft_bounced": 2, "complained": 1, "score": 91.5}
    return ReputationSnapshot(
        sending_domain="news.tidings.test", provider="gmail", sent=600, accepted=590, bounced=10, deferred=4,
        complained=1, hard_bounced=8, soft_bounced=2, opened=120, clicked=30, unsubscribed=3, score=91.5,
        state="warning", window_end=NOW - timedelta(seconds=5), updated_at=NOW,
        windows={"1h": {"sent": 50, "score": None}, "24h": day},
        control={"state": "warning", "max_per_minute": 10, "daily_cap": None, "updated_at": NOW.isoformat()},
    )


def reputation_change(**overrides) -> ReputationChanged:
    fields = dict(
        change_id="rc1", sending_domain="news.tidings.test", provider="gmail", traffic="marketing",
        from_state="healthy", to_state="throttled", reason="complaint rate 0.31% >= 0.30% over 1h", score=49.5,
        occurred_at=NOW,
    )
    return ReputationChanged(**(fields | overrides))


class JourneyDecision(BaseModel):
    """Shaped like domain/journeys.py's model; row_for must accept it without importing it."""

    decision_id: str
    journey_id: str
    journey_version: int
    subscriber_id: str
    kind: str
    step_id: str
    reason: str
    event_id: str
    occurred_at: datetime


def decision() -> JourneyDecision:
    return JourneyDecision(
        decision_id="jd1",
        journey_id="abandoned-cart",
        journey_version=3,
        subscriber_id="s1",
        kind="enrolled",
        step_id="wait-1",
        reason="trigger cart.updated matched for alice@example.com",
        event_id="e1",
        occurred_at=NOW,
    )


ALL_PAYLOADS = [
    ("events", event()),
    ("send_intents", intent()),
    ("deliveries", delivery()),
    ("segment_changes", segment_change()),
    ("reputation_snapshots", scored_snapshot()),
    ("reputation_changes", reputation_change()),
    ("journey_decisions", decision()),
]


@pytest.mark.parametrize(("table", "payload"), ALL_PAYLOADS, ids=[table for table, _ in ALL_PAYLOADS])
def test_every_contract_maps_to_exactly_its_table_columns(table, payload):
    mapped_table, row = row_for(payload)
    assert mapped_table == table
    assert list(row) == column_names(table)


@pytest.mark.parametrize(("table", "payload"), ALL_PAYLOADS, ids=[table for table, _ in ALL_PAYLOADS])
def test_no_row_carries_an_email_address(table, payload):
    _, row = row_for(payload)
    assert "@example.com" not in json.dumps(row, default=str)


def test_every_table_has_a_mapping_and_the_ddl_names_every_column():
    assert {table for table, _ in ALL_PAYLOADS} == set(TABLES)
    ddl = "\n".join(statement for migration in MIGRATIONS for statement in migration.statements)
    for spec in TABLES.values():
        assert f"tidings.{spec.name}\n" in ddl
        for name, type_ in spec.columns:
            assert any(f"`{name}` {type_}{end}" in ddl for end in (",", "\n", " DEFAULT ")), (spec.name, name)


def test_event_row_strips_email_from_traits_and_properties_and_flags_it():
    payload = event(
        properties={"email": "bob@example.com", "plan": "pro", "contact": {"Email": "x@y.io"}, "cc": ["a@b.org", "ok"]},
        context={"traits": {"email": "bob@example.com", "name": "Bob"}, "note": "write to bob@example.com"},
    )
    _, row = row_for(payload)
    assert json.loads(row["properties"]) == {"plan": "pro", "contact": {}, "cc": ["ok"]}
    assert json.loads(row["context"]) == {"traits": {"name": "Bob"}, "note": "write to <email>"}
    assert row["has_email"] == 1


def test_event_row_without_email_keeps_everything():
    _, row = row_for(event())
    assert json.loads(row["properties"]) == {"total": 42, "items": [{"sku": "a"}]}
    assert json.loads(row["context"]) == {"ip": "10.0.0.1"}
    assert row["has_email"] == 0
    assert row["occurred_at"] == NOW and row["received_at"] == NOW + timedelta(seconds=1)


def test_send_intent_row_drops_the_address_and_variables():
    _, row = row_for(intent())
    assert row["transactional"] == 1 and row["priority"] == 5 and row["journey_version"] == 3
    assert "to" not in row and "variables" not in row


def test_delivery_row_masks_addresses_quoted_in_smtp_replies():
    _, row = row_for(delivery())
    assert row["detail"] == "550 5.1.1 <<email>>: Recipient address rejected"
    assert row["smtp_code"] == 550
    _, row = row_for(delivery(smtp_code=None, detail=""))
    assert row["smtp_code"] is None and row["detail"] == ""


def test_segment_change_row_keeps_its_causes():
    _, row = row_for(segment_change())
    assert row["cause_event_ids"] == ["e1", "e2"]


def test_reputation_snapshot_id_is_domain_provider_and_time():
    _, row = row_for(snapshot())
    assert row["snapshot_id"] == f"news.tidings.test|gmail|{NOW.isoformat()}"
    _, later = row_for(snapshot().model_copy(update={"updated_at": NOW + timedelta(seconds=1)}))
    assert later["snapshot_id"] != row["snapshot_id"]


def test_reputation_snapshot_row_keeps_score_counters_windows_and_control():
    _, row = row_for(scored_snapshot())
    assert row["score"] == 91.5 and row["state"] == "warning"
    assert [row[name] for name in ("hard_bounced", "soft_bounced", "opened", "clicked", "unsubscribed")] == [8, 2, 120, 30, 3]
    assert row["window_end"] == NOW - timedelta(seconds=5)
    assert json.loads(row["windows"])["24h"]["score"] == 91.5 and json.loads(row["windows"])["1h"]["score"] is None
    assert json.loads(row["control"]) == {"state": "warning", "max_per_minute": 10, "daily_cap": None,
                                          "updated_at": NOW.isoformat()}


def test_a_snapshot_before_any_outcome_has_no_score_no_window_end_and_empty_json():
    _, row = row_for(snapshot())
    assert row["score"] is None and row["window_end"] is None
    assert row["windows"] == "{}" and row["control"] == "{}"
    assert row["hard_bounced"] == row["unsubscribed"] == 0


def test_reputation_times_without_a_zone_are_taken_as_utc():
    naive = NOW.replace(tzinfo=None)
    _, row = row_for(scored_snapshot().model_copy(update={"window_end": naive}))
    assert row["window_end"] == NOW and row["window_end"].tzinfo is timezone.utc
    _, row = row_for(reputation_change(occurred_at=naive))
    assert row["occurred_at"] == NOW and row["occurred_at"].tzinfo is timezone.utc


def test_reputation_change_row_is_the_transition():
    table, row = row_for(reputation_change())
    assert table == "reputation_changes"
    assert row == {
        "change_id": "rc1", "sending_domain": "news.tidings.test", "provider": "gmail", "traffic": "marketing",
        "from_state": "healthy", "to_state": "throttled", "reason": "complaint rate 0.31% >= 0.30% over 1h",
        "score": 49.5, "occurred_at": NOW,
    }
    _, resumed = row_for(reputation_change(change_id="rc2", to_state="healthy", score=None,
                                           reason="resumed by ops@example.com"))
    assert resumed["score"] is None and resumed["reason"] == "resumed by <email>"


def test_any_object_with_decision_fields_maps_to_journey_decisions():
    @dataclass
    class PlainDecision:
        decision_id: str = "jd2"
        journey_id: str = "welcome"
        journey_version: int = 1
        subscriber_id: str = "s2"
        kind: str = "exited"
        step_id: str = ""
        reason: str = "goal reached"
        event_id: str = "e9"
        occurred_at: datetime = NOW

    table, row = row_for(PlainDecision())
    assert table == "journey_decisions"
    assert row["reason"] == "goal reached" and row["journey_version"] == 1


def test_a_decision_missing_fields_is_refused_by_name():
    @dataclass
    class HalfDecision:
        decision_id: str = "jd3"
        journey_id: str = "welcome"

    with pytest.raises(TypeError, match="lacks journey_version"):
        row_for(HalfDecision())


def test_a_decision_with_a_non_datetime_time_is_refused():
    bad = decision().model_copy(update={"occurred_at": "yesterday"})
    with pytest.raises(TypeError, match="occurred_at must be a datetime"):
        row_for(bad)


def test_a_payload_without_a_table_is_refused_by_name():
    consent = ConsentChanged(consent_event_id="k1", subscriber_id="s1", status="unsubscribed", occurred_at=NOW)
    with pytest.raises(TypeError, match="no analytics table for ConsentChanged"):
        row_for(consent)


def test_rows_by_table_groups_in_arrival_order():
    grouped = rows_by_table([event(event_id="a"), delivery(), event(event_id="b")])
    assert [row["event_id"] for row in grouped["events"]] == ["a", "b"]
    assert len(grouped["deliveries"]) == 1


def test_mask_emails_leaves_other_at_signs_alone():
    assert mask_emails("meet @ noon, ping @bob") == "meet @ noon, ping @bob"
    assert mask_emails("to a.b+c@mail.example.co.uk now") == "to <email> now"


def test_unknown_table_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown analytics table 'nope'"):
        column_names("nope")


# ---- the user-query statement check (pure part of connectors/clickhouse.py) -------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  select count() from tidings.events;  ",
        "WITH 1 AS x SELECT x",
        "SHOW TABLES FROM tidings",
        "DESCRIBE TABLE tidings.events",
        "SELECT ';' AS semi, 'it''s' AS q -- trailing; comment",
        "/* leading; comment */ SELECT 1",
    ],
)
def test_read_statements_pass_the_check(sql):
    assert read_only_statement(sql) == sql.strip().rstrip(";").rstrip()


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("", "empty"),
        ("-- only a comment", "empty"),
        ("DROP TABLE tidings.events", "not DROP"),
        ("INSERT INTO tidings.events SELECT * FROM tidings.events", "not INSERT"),
        ("SELECT 1; DROP TABLE tidings.events", "one statement"),
        ("SELECT 1 INTO OUTFILE '/tmp/x.csv'", "OUTFILE"),
        ("SET readonly = 0", "not SET"),
        ("OPTIMIZE TABLE tidings.events FINAL", "not OPTIMIZE"),
    ],
)
def test_other_statements_are_refused_with_a_reason(sql, reason):
    with pytest.raises(QueryRefused, match=reason):
        read_only_statement(sql)


def test_json_value_makes_clickhouse_values_json_friendly():
    naive = datetime(2026, 1, 2, 3, 4, 5)
    assert json_value(naive) == "2026-01-02T03:04:05+00:00"
    assert json_value([NOW, (1, "x")]) == [NOW.isoformat(), [1, "x"]]
    assert json_value(float("nan")) is None
    json.dumps(json_value({"t": NOW, "b": b"\xff"}))


def test_the_journeys_decision_contract_maps_to_journey_decisions():
    from domain.journeys import JourneyDecision as RealDecision

    real = RealDecision(**decision().model_dump(exclude={"kind"}), kind="entered")
    table, row = row_for(real)
    assert table == "journey_decisions"
    assert list(row) == column_names("journey_decisions")
    assert row["kind"] == "entered" and row["occurred_at"] == NOW
