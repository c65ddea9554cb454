"""Every documented query against the hand-countable dataset in `analytics_seed`, on real chDB.

The expected numbers are counted from the seed's description (its module docstring), not read back
from ClickHouse: e.g. 100 of 200 welcome messages were opened (40 of welcome-a, 60 of welcome-b).
"""

from __future__ import annotations

import pytest

from connectors.analytics_queries import QUERIES, render
from connectors.analytics_schema import MIGRATIONS
from connectors.clickhouse import Analytics
from tests.integration.analytics_seed import day_d, h, seed, seed_rows

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    store = Analytics(f"chdb://{tmp_path_factory.mktemp('analytics-queries')}")
    store.migrate()
    seed(store)
    yield store
    store.close()


def run(store: Analytics, name: str, **params) -> list[list]:
    return store.query(render(name, **params), readonly=True).rows


def iso(hours: float) -> str:
    return h(hours).isoformat()


D = day_d().date().isoformat()


def test_seed_goes_in_once_even_when_redelivered(seeded):
    assert seed(seeded) == {table: 0 for table in seed_rows()}
    assert seeded.count("events") == 376  # 300 signups + 51 orders + 25 cart updates
    assert seeded.count("send_intents") == 220
    assert seeded.count("journey_decisions") == 550  # welcome 400 + holdout 100 + cart 25 entered + 25 sent/skipped


def test_journey_funnel(seeded):
    assert run(seeded, "journey_funnel") == [
        ["cart", 25, 20, 16, 0, 0],
        ["welcome", 200, 200, 200, 100, 35],
    ]
    assert run(seeded, "journey_funnel", days=1) == []  # D is two days ago


def test_step_funnel(seeded):
    assert run(seeded, "step_funnel") == [
        ["cart", "remind", 20, 16, 0, 0, 0.8, 0.0],
        ["welcome", "send-welcome", 200, 200, 100, 35, 1.0, 0.175],
    ]


def test_sends_over_time(seeded):
    # intents 200 + 20; delivered 200 + 15 + c12's retry; bounced c10, c11; complaint w199; unsubscribe w198
    assert run(seeded, "sends_over_time") == [[D, 220, 216, 100, 35, 2, 1, 1]]


def test_deliverability_by_identity(seeded):
    assert run(seeded, "deliverability_by_identity") == [
        ["news.example.com", "gmail.com", 100, 0, 0, 0, 0.0, 0.0],
        ["news.example.com", "yahoo.com", 100, 0, 0, 1, 0.0, 0.01],
        ["shop.example.com", "gmail.com", 4, 3, 2, 0, 0.3333, 0.0],  # w000 w002 w004 c12; 2 of 6 bounced
        ["shop.example.com", "outlook.com", 10, 0, 0, 0, 0.0, 0.0],
        ["shop.example.com", "yahoo.com", 2, 0, 0, 0, 0.0, 0.0],
    ]


def test_deliverability_by_provider_daily(seeded):
    assert run(seeded, "deliverability_by_provider_daily") == [
        [D, "gmail.com", 104, 3, 2, 0, 0.0189],  # 2 / 106
        [D, "outlook.com", 10, 0, 0, 0, 0.0],
        [D, "yahoo.com", 102, 0, 0, 1, 0.0],
    ]


def test_reputation_latest(seeded):
    assert run(seeded, "reputation_latest") == [
        ["news.example.com", "gmail.com", "healthy", 100, 100, 0, 0, 0, iso(2)],
        ["shop.example.com", "gmail.com", "warning", 5, 0, 2, 3, 0, iso(3)],
    ]


def test_reputation_transitions(seeded):
    complaints, resumed = "complaint rate 0.60% >= 0.50% over 1h", "resumed by operator"
    assert run(seeded, "reputation_transitions") == [
        ["shop.example.com", "gmail.com", "marketing", iso(2), "healthy", "paused", complaints, 10.0, None],
        ["shop.example.com", "gmail.com", "marketing", iso(2.5), "paused", "healthy", resumed, None, 1800],  # paused 30 min
        ["shop.example.com", "gmail.com", "marketing", iso(3), "healthy", "warning",
         "bounce rate 2.50% >= 2.00% over 1h", 66.67, 1800],
        ["shop.example.com", "gmail.com", "transactional", iso(2), "healthy", "paused",
         "bounce rate 16.00% >= 15.00% over 1h", 10.0, None],
        ["shop.example.com", "gmail.com", "transactional", iso(2.5), "paused", "healthy", resumed, None, 1800],
    ]
    assert run(seeded, "reputation_transitions", sending_domain="news.example.com") == []
    assert len(run(seeded, "reputation_transitions", sending_domain="shop.example.com")) == 5
    assert run(seeded, "reputation_transitions", days=1) == []  # D is two days ago


def test_conversion_attribution_credits_the_last_message_in_the_window(seeded):
    assert run(seeded, "conversion_attribution") == [
        ["(none)", "(none)", 11],  # h000..h009 got nothing; w050 ordered before any message
        ["cart", "cart-reminder", 5],  # w000..w004: the cart reminder at h3 came after the welcome at h1
        ["welcome", "welcome-a", 15],
        ["welcome", "welcome-b", 20],
    ]
    # A 3 h window reaches back to h2: only the cart reminders (h3) qualify.
    assert run(seeded, "conversion_attribution", window_hours=3) == [["(none)", "(none)", 46], ["cart", "cart-reminder", 5]]


def test_holdout_lift(seeded):
    assert run(seeded, "holdout_lift") == [[200, 40, 0.2, 100, 10, 0.1, 0.1, 1.0]]
    # Orders came 4 hours after the decisions: a zero-day window sees none in either arm.
    assert run(seeded, "holdout_lift", window_days=0)[0][:2] == [200, 0]


def test_template_ab_z_test(seeded):
    # pooled p = 35/200 = 0.175; z = 0.15 / sqrt(0.175 * 0.825 * (1/100 + 1/100)) = 2.7915; erf(z / sqrt 2) = 0.9947
    assert run(seeded, "template_ab") == [["welcome-a", 100, 10, 0.1, "welcome-b", 100, 25, 0.25, 0.175, 2.791, 0.9947]]
    assert run(seeded, "template_ab", step_id="no-such-step") == []


def test_segment_members_as_of(seeded):
    assert run(seeded, "segment_members_as_of") == [["s1", iso(1)], ["s3", iso(4)], ["s4", iso(3)]]
    assert run(seeded, "segment_members_as_of", as_of=h(2.5)) == [["s1", iso(1)], ["s2", iso(1)]]
    assert run(seeded, "segment_members_as_of", as_of=h(3.5).isoformat()) == [["s1", iso(1)], ["s4", iso(3)]]
    assert run(seeded, "segment_members_as_of", segment_id="other") == [["s5", iso(1)]]
    assert run(seeded, "segment_members_as_of", as_of=h(0)) == []


def test_why_received(seeded):
    day = D
    assert run(seeded, "why_received", subscriber_id="w000") == [
        ["i-welcome-w000", "welcome", 1, "send-welcome", "welcome-a", "delivered", iso(1 + 1 / 60),
         "user.signed_up", iso(0), [f"{day} 01:00:00 entered", f"{day} 01:00:00 sent send-welcome"]],
        ["i-cart-w000", "cart", 1, "remind", "cart-reminder", "delivered", iso(3),
         "cart.updated", iso(2.5), [f"{day} 02:30:00 entered", f"{day} 02:45:00 sent remind"]],
    ]
    assert run(seeded, "why_received", subscriber_id="h000") == []  # held out: no message


def test_message_lifecycle(seeded):
    deferred_then_delivered = run(seeded, "message_lifecycle", subscriber_id="c12")
    assert deferred_then_delivered == [
        ["i-cart-c12", "cart", "cart-reminder", "delivered", 2, iso(2.75), iso(3), iso(3), iso(4),
         None, None, None, None, None],
    ]
    [bounced] = run(seeded, "message_lifecycle", subscriber_id="c10")
    assert bounced[3:5] == ["bounced", 1] and bounced[9] == iso(3) and bounced[8] is None
    [complained] = run(seeded, "message_lifecycle", subscriber_id="w199")
    assert complained[3] == "complained" and complained[10:13] == [None, None, iso(2)]  # not opened, not clicked


def test_every_documented_query_is_tested_here():
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    for name in QUERIES:
        assert any(test.startswith(name) for test in tested), f"query {name} has no test here"


def test_rerunning_the_rollup_migration_rebuilds_the_same_counts(seeded):
    before = {name: run(seeded, name) for name in ("journey_funnel", "sends_over_time", "deliverability_by_identity")}
    for statement in MIGRATIONS[1].statements:  # what an interrupted, restarted migration does
        seeded.query(statement)
    assert {name: run(seeded, name) for name in before} == before

