"""A small, hand-countable analytics dataset for the documented queries.

Everything happens on day D = two days before today (UTC), so the queries' "last N days" windows
and the raw tables' 400-day TTL both keep it. Hour h means D + h hours.

Journey `welcome` (sending domain news.example.com), step `send-welcome`:
- w000..w199 signed up at h0, entered at h1 and were sent welcome-a (w000..w099) or welcome-b
  (w100..w199) at h1; all 200 delivered at h1+1min. Recipient domain gmail.com for even numbers,
  yahoo.com for odd.
- opened: w000..w039 (a, 40) and w100..w159 (b, 60); clicked: w000..w009 (a, 10), w100..w124 (b, 25).
- w199 complained, w198 unsubscribed (h2).
- h000..h099 signed up at h0 and were held out (decision 'holdout') at h1.
Journey `cart` (shop.example.com), step `remind`, template cart-reminder:
- w000..w004 and c00..c19 updated a cart at h2.5 and entered; c15..c19 were skipped (quiet hours);
  the other 20 were sent at h2.75. w000..w004 (gmail/yahoo as above) and c00..c09 (outlook.com)
  delivered at h3; c10, c11 (gmail.com) hard-bounced at h3; c12..c14 (gmail.com) deferred at h3;
  c12 then delivered at h4.
Orders (`order.placed`) at h5: w000..w019, w100..w119, h000..h009; w050 ordered at h-1 (before any
message, and on day D-1).
Segment `vip`: s1 entered h1; s2 entered h1, exited h3; s3 entered h4; s4 entered h1, exited h2,
entered h3. Segment `other`: s5 entered h1.
Reputation: news.example.com|gmail.com at h1 (50 sent/accepted) and h2 (100/100, healthy);
shop.example.com|gmail.com at h3 (5 sent, 0 accepted, 2 bounced, 3 deferred, warning).
Reputation transitions of shop.example.com|gmail.com: marketing healthy -> paused at h2 (score 10),
paused -> healthy at h2.5 (operator resume), healthy -> warning at h3 (score 66.67); transactional
healthy -> paused at h2 (score 10) and paused -> healthy at h2.5.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Any

from connectors.clickhouse import Analytics

Row = dict[str, Any]


def day_d() -> datetime:
    today = datetime.now(timezone.utc).date()
    return datetime.combine(today - timedelta(days=2), time(0), tzinfo=timezone.utc)


def h(hours: float) -> datetime:
    return day_d() + timedelta(hours=hours)


def _event(event_id: str, type_: str, subscriber: str, at: datetime) -> Row:
    return {
        "event_id": event_id, "type": type_, "subscriber_id": subscriber, "occurred_at": at,
        "received_at": at, "source": "api", "properties": "{}", "context": "{}", "has_email": 0,
    }


def _decision(journey: str, subscriber: str, kind: str, step: str, at: datetime, event_id: str, reason: str = "") -> Row:
    return {
        "decision_id": f"dec-{journey}-{subscriber}-{kind}-{step}", "journey_id": journey, "journey_version": 1,
        "subscriber_id": subscriber, "kind": kind, "step_id": step, "reason": reason, "event_id": event_id,
        "occurred_at": at,
    }


def _intent(journey: str, step: str, template: str, subscriber: str, trigger: str, at: datetime) -> Row:
    return {
        "intent_id": f"i-{journey}-{subscriber}", "subscriber_id": subscriber, "journey_id": journey,
        "journey_version": 1, "step_id": step, "template_id": template, "trigger_event_id": trigger,
        "created_at": at, "transactional": 0, "priority": 0,
    }


def _delivery(intent: Row, kind: str, at: datetime, sending: str, recipient: str, attempt: int = 1) -> Row:
    return {
        "delivery_id": f"d-{kind}-{intent['intent_id']}-{attempt}", "intent_id": intent["intent_id"],
        "subscriber_id": intent["subscriber_id"], "kind": kind, "occurred_at": at,
        "journey_id": intent["journey_id"], "template_id": intent["template_id"], "sending_domain": sending,
        "recipient_domain": recipient, "message_id": f"<{intent['intent_id']}@{sending}>",
        "smtp_code": {"accepted": 250, "deferred": 451, "bounced": 550}.get(kind), "enhanced_status": "",
        "bounce_type": "hard" if kind == "bounced" else "", "attempt": attempt, "detail": "",
    }


def _snapshot(sending: str, provider: str, at: datetime, sent: int, accepted: int, bounced: int, deferred: int, state: str) -> Row:
    return {
        "snapshot_id": f"{sending}|{provider}|{at.isoformat()}", "sending_domain": sending, "provider": provider,
        "sent": sent, "accepted": accepted, "bounced": bounced, "deferred": deferred, "complained": 0,
        "state": state, "updated_at": at, "score": None, "hard_bounced": bounced, "soft_bounced": 0, "opened": 0,
        "clicked": 0, "unsubscribed": 0, "window_end": at, "windows": "{}", "control": "{}",
    }


def _change(sending: str, provider: str, traffic: str, from_state: str, to_state: str, at: datetime, reason: str,
            score: float | None) -> Row:
    return {
        "change_id": f"rc-{sending}-{provider}-{traffic}-{from_state}-{to_state}-{at.isoformat()}",
        "sending_domain": sending, "provider": provider, "traffic": traffic, "from_state": from_state,
        "to_state": to_state, "reason": reason, "score": score, "occurred_at": at,
    }


def seed_rows() -> dict[str, list[Row]]:
    rows: dict[str, list[Row]] = {name: [] for name in (
        "events", "send_intents", "deliveries", "journey_decisions", "segment_changes", "reputation_snapshots",
        "reputation_changes")}
    events, intents, deliveries, decisions = rows["events"], rows["send_intents"], rows["deliveries"], rows["journey_decisions"]
    news, shop = "news.example.com", "shop.example.com"

    for n in range(200):
        sub = f"w{n:03d}"
        provider = "gmail.com" if n % 2 == 0 else "yahoo.com"
        signup = f"ev-signup-{sub}"
        events.append(_event(signup, "user.signed_up", sub, h(0)))
        decisions.append(_decision("welcome", sub, "entered", "", h(1), signup))
        decisions.append(_decision("welcome", sub, "sent", "send-welcome", h(1), signup))
        intent = _intent("welcome", "send-welcome", "welcome-a" if n < 100 else "welcome-b", sub, signup, h(1))
        intents.append(intent)
        deliveries.append(_delivery(intent, "accepted", h(1) + timedelta(minutes=1), news, provider))
        if n < 40 or 100 <= n < 160:
            deliveries.append(_delivery(intent, "opened", h(2), news, provider))
        if n < 10 or 100 <= n < 125:
            deliveries.append(_delivery(intent, "clicked", h(2), news, provider))
        if n == 199:
            deliveries.append(_delivery(intent, "complained", h(2), news, provider))
        if n == 198:
            deliveries.append(_delivery(intent, "unsubscribed", h(2), news, provider))
        if n < 20 or 100 <= n < 120:
            events.append(_event(f"ev-order-{sub}", "order.placed", sub, h(5)))
    events.append(_event("ev-order-w050", "order.placed", "w050", h(-1)))

    for n in range(100):
        sub = f"h{n:03d}"
        signup = f"ev-signup-{sub}"
        events.append(_event(signup, "user.signed_up", sub, h(0)))
        decisions.append(_decision("welcome", sub, "holdout", "", h(1), signup, reason="holdout 33%"))
        if n < 10:
            events.append(_event(f"ev-order-{sub}", "order.placed", sub, h(5)))

    cart_subscribers = [(f"w{n:03d}", "gmail.com" if n % 2 == 0 else "yahoo.com") for n in range(5)]
    cart_subscribers += [(f"c{n:02d}", "outlook.com" if n < 10 else "gmail.com") for n in range(20)]
    for index, (sub, provider) in enumerate(cart_subscribers):
        cart = f"ev-cart-{sub}"
        events.append(_event(cart, "cart.updated", sub, h(2.5)))
        decisions.append(_decision("cart", sub, "entered", "", h(2.5), cart))
        if sub >= "c15" and sub.startswith("c"):
            decisions.append(_decision("cart", sub, "skipped", "remind", h(2.75), cart, reason="quiet hours"))
            continue
        decisions.append(_decision("cart", sub, "sent", "remind", h(2.75), cart))
        intent = _intent("cart", "remind", "cart-reminder", sub, cart, h(2.75))
        intents.append(intent)
        if sub in ("c10", "c11"):
            deliveries.append(_delivery(intent, "bounced", h(3), shop, provider))
        elif sub in ("c12", "c13", "c14"):
            deliveries.append(_delivery(intent, "deferred", h(3), shop, provider))
            if sub == "c12":
                deliveries.append(_delivery(intent, "accepted", h(4), shop, provider, attempt=2))
        else:
            deliveries.append(_delivery(intent, "accepted", h(3), shop, provider))

    changes = rows["segment_changes"]
    for segment, sub, change, hour in (
        ("vip", "s1", "entered", 1), ("vip", "s2", "entered", 1), ("vip", "s2", "exited", 3),
        ("vip", "s3", "entered", 4), ("vip", "s4", "entered", 1), ("vip", "s4", "exited", 2),
        ("vip", "s4", "entered", 3), ("other", "s5", "entered", 1),
    ):
        changes.append({
            "change_id": f"chg-{segment}-{sub}-{change}-{hour}", "segment_id": segment, "segment_version": 1,
            "subscriber_id": sub, "change": change, "occurred_at": h(hour), "cause_event_ids": [],
        })

    rows["reputation_snapshots"] += [
        _snapshot(news, "gmail.com", h(1), 50, 50, 0, 0, "healthy"),
        _snapshot(news, "gmail.com", h(2), 100, 100, 0, 0, "healthy"),
        _snapshot(shop, "gmail.com", h(3), 5, 0, 2, 3, "warning"),
    ]
    complaints, bounces = "complaint rate 0.60% >= 0.50% over 1h", "bounce rate 16.00% >= 15.00% over 1h"
    rows["reputation_changes"] += [
        _change(shop, "gmail.com", "marketing", "healthy", "paused", h(2), complaints, 10.0),
        _change(shop, "gmail.com", "transactional", "healthy", "paused", h(2), bounces, 10.0),
        _change(shop, "gmail.com", "marketing", "paused", "healthy", h(2.5), "resumed by operator", None),
        _change(shop, "gmail.com", "transactional", "paused", "healthy", h(2.5), "resumed by operator", None),
        _change(shop, "gmail.com", "marketing", "healthy", "warning", h(3), "bounce rate 2.50% >= 2.00% over 1h", 66.67),
    ]
    return rows


def seed(analytics: Analytics) -> dict[str, int]:
    """Insert the dataset through the sink's write path; returns rows inserted per table."""
    return {table: analytics.insert_rows(table, rows) for table, rows in seed_rows().items()}
