"""The consent state the worker keeps per subscriber, and the rule the sender obeys.

State is a JSON-able dict (a Faust table value), folded from `ConsentChanged` records of
`tidings.consent` and from hard bounces and complaints on `tidings.delivery`:

    {
      "status": "subscribed" | "unsubscribed",     # global marketing status
      "suppressed": "" | "hard_bounce" | "complaint" | "manual",
      "erased": bool,
      "lists": {list_id: "subscribed" | "unsubscribed" | "pending"},
      "seen": [consent_event_id, ...],            # the last few, to drop relayed duplicates
      "updated_at": iso-8601,
    }

An empty dict means the subscriber never appeared on the consent topic.
"""

from __future__ import annotations

from typing import Any

from domain.events import ConsentChanged, DeliveryEvent
from domain.subscribers import REASON_OPT_IN_PENDING, REASON_UNSUPPRESSED

SEEN_KEPT = 64


def fold_consent(state: dict[str, Any], change: ConsentChanged) -> dict[str, Any]:
    """The state after one consent record; a record already seen (relay redelivery) changes nothing."""
    seen = list(state.get("seen", []))
    if change.consent_event_id in seen:
        return state
    new = {
        "status": state.get("status", "subscribed"),
        "suppressed": state.get("suppressed", ""),
        "erased": bool(state.get("erased", False)),
        "lists": dict(state.get("lists", {})),
    }
    if change.status == "erased":
        # Nothing about an erased person is kept but the fact: no lists, no reasons.
        new = {"status": "unsubscribed", "suppressed": "", "erased": True, "lists": {}}
    elif change.status == "suppressed":
        new["suppressed"] = change.reason or "manual"
    elif change.reason == REASON_UNSUPPRESSED:
        new["suppressed"] = ""
    elif change.list_id:
        pending = change.status == "unsubscribed" and change.reason == REASON_OPT_IN_PENDING
        new["lists"][change.list_id] = "pending" if pending else change.status
    elif change.status in ("subscribed", "unsubscribed") and change.reason not in ("registered", "profile-updated"):
        new["status"] = change.status
    new["seen"] = (seen + [change.consent_event_id])[-SEEN_KEPT:]
    new["updated_at"] = change.occurred_at.isoformat()
    return new


def fold_delivery(state: dict[str, Any], delivery: DeliveryEvent) -> dict[str, Any]:
    """Hard bounces and complaints suppress at once, before the event store hears of them."""
    if delivery.kind == "complained":
        reason = "complaint"
    elif delivery.kind == "bounced" and delivery.bounce_type == "hard":
        reason = "hard_bounce"
    else:
        return state
    if state.get("suppressed") or state.get("erased"):
        return state
    return {
        "status": state.get("status", "subscribed"),
        "lists": dict(state.get("lists", {})),
        "erased": False,
        "seen": list(state.get("seen", [])),
        "suppressed": reason,
        "updated_at": delivery.occurred_at.isoformat(),
    }


def may_send_marketing(state: dict[str, Any], list_id: str | None) -> tuple[bool, str]:
    """Whether marketing mail may go to the subscriber whose consent state is `state`.

    Contract (the sender calls this for every non-transactional intent):
      * `state` is the dict the consent stage stores (see the module docstring); `{}` when unknown.
      * Unknown subscriber (`{}`): allowed, reason "unknown". Product systems create subscribers by
        sending events, and those create no consent record; their trigger mail is allowed until a
        consent record says otherwise.
      * Erased: refused, "erased". Suppressed: refused, "suppressed:<reason>". Globally
        unsubscribed: refused, "unsubscribed".
      * With `list_id`: refused when that list is unsubscribed ("unsubscribed:<list>") or still
        awaiting double opt-in ("pending:<list>"); a list never mentioned is allowed.
      * Otherwise allowed, reason "subscribed".
    The reason is short, contains no personal data and is safe to log.
    """
    if not state:
        return True, "unknown"
    if state.get("erased"):
        return False, "erased"
    if state.get("suppressed"):
        return False, f"suppressed:{state['suppressed']}"
    if state.get("status") == "unsubscribed":
        return False, "unsubscribed"
    if list_id is not None:
        list_status = state.get("lists", {}).get(list_id)
        if list_status == "unsubscribed":
            return False, f"unsubscribed:{list_id}"
        if list_status == "pending":
            return False, f"pending:{list_id}"
    return True, "subscribed"
