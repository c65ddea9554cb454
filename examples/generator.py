"""Synthetic subscribers and events for the demo, the end-to-end tests and the benchmarks.

Deterministic for a seed, so a run can state in advance which emails the example journeys must send.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim", "Margaret", "Linus"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Berners"]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "icloud.com", "example.org", "proton.me"]
COUNTRIES = ["US", "CA", "GB", "DE", "FR", "BR", "IN", "JP"]
PRODUCTS = ["kettle", "teapot", "mug", "grinder", "scale", "filter"]


@dataclass
class Expectation:
    """What the example journeys must do with the generated events.

    welcome: 2 emails per sign-up; first-order, post-purchase-review: 1 per buyer; win-back: 1 per
    buyer outside its 10% holdout; abandoned-cart: 1 per cart left without an order.
    """

    signed_up: set[str] = field(default_factory=set)
    buyers: set[str] = field(default_factory=set)
    abandoned_carts: set[str] = field(default_factory=set)
    emails: dict[str, str] = field(default_factory=dict)

    @property
    def win_back(self) -> set[str]:
        from domain.journeys import split_bucket

        return {s for s in self.buyers if split_bucket(s, "win-back") < 90}

    @property
    def expected_by_template(self) -> dict[str, int]:
        return {
            "welcome": len(self.signed_up),
            "welcome-follow-up": len(self.signed_up),
            "thanks-first-order": len(self.buyers),
            "review-request": len(self.buyers),
            "win-back": len(self.win_back),
            "cart-reminder": len(self.abandoned_carts),
        }

    @property
    def expected_messages(self) -> int:
        return sum(self.expected_by_template.values())


def _event(subscriber_id: str, event_type: str, at: datetime, properties: dict[str, Any] | None = None,
           traits: dict[str, Any] | None = None, namespace: str = "") -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{subscriber_id}/{event_type}/{at.isoformat()}").hex,
        "type": event_type,
        "subscriber_id": subscriber_id,
        "occurred_at": at.isoformat(),
        "properties": properties or {},
    }
    if traits:
        event["context"] = {"traits": traits}
    return event


def generate(subscribers: int, seed: int = 7, start: datetime | None = None, namespace: str = "demo") -> tuple[list[dict[str, Any]], Expectation]:
    """Events in per-subscriber order (identify first), and what the example journeys should send."""
    rng = random.Random(seed)
    start = start or datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
    events: list[dict[str, Any]] = []
    expectation = Expectation()
    for n in range(subscribers):
        subscriber_id = f"sub-{namespace}-{n:06d}"
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{first}.{last}.{n}@{rng.choice(DOMAINS)}".lower()
        at = start + timedelta(seconds=rng.randint(0, 86_400))
        traits = {"email": email, "first_name": first, "last_name": last, "country": rng.choice(COUNTRIES),
                  "plan": rng.choice(["free", "free", "pro"])}
        events.append(_event(subscriber_id, "identify", at, traits=traits, namespace=namespace))
        expectation.emails[subscriber_id] = email
        at += timedelta(seconds=5)
        events.append(_event(subscriber_id, "user.signed_up", at, {"plan": traits["plan"]}, namespace=namespace))
        expectation.signed_up.add(subscriber_id)
        for _ in range(rng.randint(0, 5)):
            at += timedelta(minutes=rng.randint(1, 90))
            events.append(_event(subscriber_id, "product.viewed", at, {"product": rng.choice(PRODUCTS)}, namespace=namespace))
        if rng.random() < 0.35:
            at += timedelta(minutes=rng.randint(1, 60))
            cart_id = f"cart-{n}"
            events.append(_event(subscriber_id, "cart.updated", at, {"items": rng.randint(1, 4), "cart_id": cart_id},
                                 namespace=namespace))
            for _ in range(rng.choice([1, 1, 2])):
                at += timedelta(minutes=rng.randint(5, 600))
                events.append(_event(subscriber_id, "order.placed", at,
                                     {"order_id": f"o-{n}-{at.timestamp():.0f}", "cart_id": cart_id,
                                      "total": round(rng.uniform(10, 250), 2)}, namespace=namespace))
            expectation.buyers.add(subscriber_id)
        elif rng.random() < 0.3:
            at += timedelta(minutes=rng.randint(1, 60))
            events.append(_event(subscriber_id, "cart.updated", at, {"items": rng.randint(1, 4), "cart_id": f"cart-{n}"},
                                 namespace=namespace))
            expectation.abandoned_carts.add(subscriber_id)
    return events, expectation
