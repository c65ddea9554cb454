"""The reputation stage's read model: one table value per sending domain.

`{"providers": {provider: {"windows": <bucketed counts>, "record": <state machine record>}},
"commands": [recent command ids]}` where provider is a mailbox provider or "all" (the identity as a
whole). One value per domain keeps every key of a domain on the partition that owns the domain.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from domain import reputation
from domain.events import DeliveryEvent, ReputationSnapshot
from domain.reputation import ReputationCommand, Thresholds, Transition

REMEMBERED_COMMANDS = 50


def apply(state: Mapping[str, Any], delivery: DeliveryEvent) -> dict:
    """State with `delivery` counted under the identity as a whole and under its provider."""
    if not reputation.counters_of(delivery):
        return dict(state)
    providers = dict(state.get("providers", {}))
    for provider in reputation.provider_keys(delivery):
        entry = dict(providers.get(provider, {}))
        entry["windows"] = reputation.fold(entry.get("windows", {}), delivery)
        providers[provider] = entry
    return {**state, "providers": providers}


def judge(state: Mapping[str, Any], thresholds: Thresholds, now: datetime,
          only: tuple[str, ...] | None = None) -> tuple[dict, list[tuple[str, Transition]]]:
    """Every provider's record re-evaluated (and its warm-up rolled); the transitions by provider."""
    providers = dict(state.get("providers", {}))
    transitions: list[tuple[str, Transition]] = []
    for provider, entry in providers.items():
        if only is not None and provider not in only:
            continue
        record, changed = reputation.evaluate(entry.get("record", {}), entry.get("windows", {}), thresholds, now)
        if record.get("warmup"):
            record["warmup"] = reputation.roll_warmup(record["warmup"], record["state"], now)
        providers[provider] = {**entry, "record": record}
        transitions += [(provider, t) for t in changed]
    return {**state, "providers": providers}, transitions


def apply_command(state: Mapping[str, Any], command: ReputationCommand,
                  now: datetime) -> tuple[dict, list[tuple[str, Transition]]]:
    """An operator command applied once (by command id); resume and warm-up plans."""
    seen = list(state.get("commands", []))
    if command.command_id in seen:
        return dict(state), []
    providers = dict(state.get("providers", {}))
    entry = dict(providers.get(command.provider, {}))
    record = {**reputation.new_record(now), **entry.get("record", {})}
    transitions: list[Transition] = []
    if command.action == "resume":
        record, transitions = reputation.resume(record, command.issued_at, f"resumed by {command.issued_by or 'operator'}")
    elif command.action == "warmup":
        record["warmup"] = reputation.start_warmup(command.plan, now)
    else:
        record.pop("warmup", None)
    providers[command.provider] = {**entry, "record": record}
    seen = (seen + [command.command_id])[-REMEMBERED_COMMANDS:]
    return {**state, "providers": providers, "commands": seen}, [(command.provider, t) for t in transitions]


def snapshot(sending_domain: str, provider: str, state: Mapping[str, Any], thresholds: Thresholds,
             now: datetime) -> ReputationSnapshot:
    """Counts, rates and score per window, the state and the control every sender obeys."""
    entry = state.get("providers", {}).get(provider, {})
    windows = entry.get("windows", {})
    record = {**reputation.new_record(now), **entry.get("record", {})}
    per_window: dict[str, dict[str, float | None]] = {}
    for name in reputation.WINDOWS:
        counts = reputation.window_counts(windows, name)
        per_window[name] = {**counts, **reputation.rates(counts), "score": reputation.score(counts, thresholds)}
    day = per_window["24h"]
    return ReputationSnapshot(
        sending_domain=sending_domain,
        provider=provider,
        sent=int(day["sent"] or 0),
        accepted=int(day["accepted"] or 0),
        bounced=int((day["hard_bounced"] or 0) + (day["soft_bounced"] or 0)),
        deferred=int(day["deferred"] or 0),
        complained=int(day["complained"] or 0),
        hard_bounced=int(day["hard_bounced"] or 0),
        soft_bounced=int(day["soft_bounced"] or 0),
        opened=int(day["opened"] or 0),
        clicked=int(day["clicked"] or 0),
        unsubscribed=int(day["unsubscribed"] or 0),
        score=day["score"],
        state=record["state"],
        window_end=reputation.window_end(windows),
        windows=per_window,
        control=reputation.control_of(record, thresholds, now),
        updated_at=now,
    )
