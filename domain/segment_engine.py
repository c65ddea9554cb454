"""Streaming segment membership: a compact per-subscriber profile folded record by record.

The profile keeps only what the live rules read, compiled from them:

| key       | holds                                                        | for rules                        |
|-----------|--------------------------------------------------------------|----------------------------------|
| `counts`  | `{key: n}` all-time counts                                   | `performed` without `within`     |
| `times`   | `{key: [ms, ...]}` newest first, at most `keep` per key       | `performed ... within`           |
| `firsts`  | `{key: [first_ms, last_ms]}`                                  | `first_performed`, `last_performed` |
| `traits`  | `{name: [value, ms]}` only traits some rule reads             | `attribute`                      |
| `emails`  | `[[sent_ms, intent_digest, opened], ...]` the last N sends     | `not_opened_last`                |
| `consent` | `{list_id: [status, ms]}` only lists some rule reads (+ global) | `subscribed`                    |
| `members` | `{segment_id: version}`                                       | `segment`, lookups               |
| `recent`  | the last 40 record digests, 6 characters each, in one string  | at-least-once dedupe             |
| `clock`   | the subscriber's time: the latest record or timer moment (ms) |                                  |
| `due`     | the next moment a window or duration expires (ms), if any     | durable timers                   |

A window keeps timestamps rather than per-day buckets: "at least N within W" is decided by the N
most recent timestamps (N+1 for `at_most`), so a list capped at that length is exact at any
moment, whereas buckets would blur the window's edge by a bucket's width. Typical rules ask for
1-5 occurrences, so a key costs tens of bytes.

Every part of the fold is insensitive to arrival order (sorted capped lists, min/max, latest-wins
by event time for traits and consent), so a late event lands exactly where it would have landed
in event-time order. Time moves forward only: membership is evaluated at the subscriber's clock,
the later of its newest record and the last timer that fired; expiries between two records are
processed at their exact moments before the second record, so the emitted history shows each exit
at the instant the window closed. `domain.segment_reference.evaluate_at` is the plain batch
definition the property test holds this to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.conditions import Condition, is_scalar, matches_where
from domain.events import ConsentChanged, DeliveryEvent, EventEnvelope, SegmentMembershipChanged, stable_id
from domain.segment_rules import (
    AllRule,
    AnyRule,
    AttributeRule,
    BucketRule,
    FirstPerformedRule,
    LastPerformedRule,
    NotOpenedLastRule,
    NotRule,
    PerformedRule,
    Rule,
    SegmentDefinition,
    SegmentRefRule,
    SubscribedRule,
    find_cycles,
    from_ms,
    nodes,
    referenced_segments,
    to_ms,
)
from domain.subscriber_state import event_digest

RECENT_KEPT = 40
DIGEST_CHARS = 6  # 36 bits: two records of one subscriber among 40 collide with odds near 1 in 10^9
OPT_OUTS = frozenset({"unsubscribed", "suppressed", "erased"})
GLOBAL_LIST = ""

# Delivery outcomes as the email activity a rule can count. A message is "sent" once it left for
# the recipient's server (accepted, or handed over with the outcome unknown); "delivered" only on
# acceptance. Deferrals, skips and unsubscribes are not email activity.
EMAIL_TYPES: dict[str, tuple[str, ...]] = {
    "accepted": ("email.sent", "email.delivered"),
    "ambiguous": ("email.sent",),
    "bounced": ("email.bounced",),
    "complained": ("email.complained",),
    "opened": ("email.opened",),
    "clicked": ("email.clicked",),
}


# --- what is folded ------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """One record of a subscriber, whichever topic it came from, in the shape the fold reads."""

    record_id: str
    subscriber_id: str
    at: int
    types: tuple[str, ...] = ()
    properties: Mapping[str, Any] = field(default_factory=dict)
    traits: Mapping[str, Any] = field(default_factory=dict)
    intent: str = ""
    opens: bool = False
    sends: bool = False
    consent: tuple[str, str] | None = None  # (list_id, status)

    @property
    def occurred_at(self) -> datetime:
        return from_ms(self.at)


def observe_event(event: EventEnvelope) -> Observation:
    return Observation(
        record_id=event.event_id,
        subscriber_id=event.subscriber_id,
        at=to_ms(event.occurred_at),
        types=(event.type,),
        properties=event.properties,
        traits=event.traits,
    )


def observe_delivery(delivery: DeliveryEvent) -> Observation:
    properties = {
        "template_id": delivery.template_id,
        "journey_id": delivery.journey_id,
        "sending_domain": delivery.sending_domain,
        "recipient_domain": delivery.recipient_domain,
        "bounce_type": delivery.bounce_type,
    }
    return Observation(
        record_id=f"delivery:{delivery.delivery_id}",
        subscriber_id=delivery.subscriber_id,
        at=to_ms(delivery.occurred_at),
        types=EMAIL_TYPES.get(delivery.kind, ()),
        properties=properties,
        intent=delivery.intent_id,
        sends=delivery.kind in ("accepted", "ambiguous"),
        opens=delivery.kind in ("opened", "clicked"),
    )


def observe_consent(consent: ConsentChanged) -> Observation:
    return Observation(
        record_id=f"consent:{consent.consent_event_id}",
        subscriber_id=consent.subscriber_id,
        at=to_ms(consent.occurred_at),
        consent=(consent.list_id, consent.status),
    )


# --- compiling the live segments ------------------------------------------------------------

State = dict[str, Any]
Predicate = Callable[[State, int, str, Mapping[str, int]], bool]
DueFn = Callable[[State, int], "int | None"]


@dataclass(frozen=True)
class CompiledSegments:
    """Live segments in dependency order, plus the indexes that keep per-record work small."""

    segments: tuple[SegmentDefinition, ...]
    predicates: tuple[Predicate, ...]
    fingerprint: str
    unusable: tuple[str, ...]  # segments in a reference cycle: never evaluated
    count_keys: Mapping[str, tuple[str, Mapping[str, Condition]]]
    window_keys: Mapping[str, tuple[str, Mapping[str, Condition], int, int]]  # event, where, keep, max window
    recency_keys: Mapping[str, tuple[str, Mapping[str, Condition]]]
    keys_by_type: Mapping[str, tuple[str, ...]]
    trait_names: frozenset[str]
    consent_lists: frozenset[str]
    emails_kept: int
    by_key: Mapping[str, frozenset[int]]
    by_trait: Mapping[str, frozenset[int]]
    by_emails: frozenset[int]
    by_consent: frozenset[int]
    by_time: frozenset[int]
    due_fns: tuple[DueFn, ...]
    ids: frozenset[str] = frozenset()

    @property
    def everything(self) -> frozenset[int]:
        return frozenset(range(len(self.segments)))


def compile_segments(segments: Sequence[SegmentDefinition] | CompiledSegments) -> CompiledSegments:
    if isinstance(segments, CompiledSegments):
        return segments
    ordered, unusable = _dependency_order(segments)
    count_keys: dict[str, tuple[str, Mapping[str, Condition]]] = {}
    window_keys: dict[str, tuple[str, Mapping[str, Condition], int, int]] = {}
    recency_keys: dict[str, tuple[str, Mapping[str, Condition]]] = {}
    by_key: dict[str, set[int]] = {}
    by_trait: dict[str, set[int]] = {}
    by_emails: set[int] = set()
    by_consent: set[int] = set()
    by_time: set[int] = set()
    consent_lists: set[str] = set()
    emails_kept = 0
    due_fns: list[DueFn] = []
    windows_of: dict[str, set[int]] = {}
    for i, segment in enumerate(ordered):
        for node in nodes(segment.rule):
            if isinstance(node, PerformedRule):
                spec = node.performed
                key = spec.counter_key
                by_key.setdefault(key, set()).add(i)
                if spec.window_ms is None:
                    count_keys[key] = (spec.event, spec.where)
                else:
                    _, _, keep, widest = window_keys.get(key, (spec.event, spec.where, 0, 0))
                    window_keys[key] = (spec.event, spec.where, max(keep, spec.keep), max(widest, spec.window_ms))
                    windows_of.setdefault(key, set()).add(spec.window_ms)
                    by_time.add(i)
            elif isinstance(node, (FirstPerformedRule, LastPerformedRule)):
                spec = node.first_performed if isinstance(node, FirstPerformedRule) else node.last_performed
                recency_keys[spec.counter_key] = (spec.event, spec.where)
                by_key.setdefault(spec.counter_key, set()).add(i)
                by_time.add(i)
                due_fns.append(_recency_due(spec.counter_key, isinstance(node, FirstPerformedRule), spec.span_ms))
            elif isinstance(node, AttributeRule):
                for name, condition in node.attribute.items():
                    by_trait.setdefault(name, set()).add(i)
                    if condition.is_relative:
                        by_time.add(i)
                        due_fns.append(_attribute_due(name, condition))
            elif isinstance(node, NotOpenedLastRule):
                emails_kept = max(emails_kept, node.not_opened_last)
                by_emails.add(i)
            elif isinstance(node, SubscribedRule):
                consent_lists.add(node.subscribed.list)
                by_consent.add(i)
    due_fns += [_window_due(key, tuple(sorted(windows))) for key, windows in windows_of.items()]
    keys_by_type: dict[str, list[str]] = {}
    for key, (event, *_rest) in [*count_keys.items(), *window_keys.items(), *recency_keys.items()]:
        if key not in keys_by_type.get(event, []):
            keys_by_type.setdefault(event, []).append(key)
    dependents = _dependents_closure(ordered)

    def closed(index: Mapping[str, set[int]] | set[int]) -> Any:
        def close(ids: set[int]) -> frozenset[int]:
            return frozenset(j for i in ids for j in dependents[i])

        if isinstance(index, set):
            return close(index)
        return {name: close(ids) for name, ids in index.items()}

    fingerprint = stable_id(*(f"{s.version}:{s.model_dump_json()}" for s in ordered), *unusable)[:12]
    return CompiledSegments(
        segments=tuple(ordered),
        predicates=tuple(_predicate(s.rule) for s in ordered),
        fingerprint=fingerprint,
        unusable=tuple(unusable),
        count_keys=count_keys,
        window_keys=window_keys,
        recency_keys=recency_keys,
        keys_by_type={event: tuple(keys) for event, keys in keys_by_type.items()},
        trait_names=frozenset(by_trait),
        consent_lists=frozenset(consent_lists | ({GLOBAL_LIST} if consent_lists else set())),
        emails_kept=emails_kept,
        by_key=closed(by_key),
        by_trait=closed(by_trait),
        by_emails=closed(by_emails),
        by_consent=closed(by_consent),
        by_time=closed(by_time),
        due_fns=tuple(due_fns),
        ids=frozenset(s.id for s in ordered),
    )


def _dependency_order(segments: Sequence[SegmentDefinition]) -> tuple[list[SegmentDefinition], list[str]]:
    """Segments sorted so each comes after those it refers to; cyclic ones set aside.

    Validation rejects cycles before publishing; this keeps a worker safe from a bad topic anyway.
    """
    by_id = {s.id: s for s in segments}
    graph = {s.id: referenced_segments(s.rule) & by_id.keys() for s in segments}
    cyclic = {sid for cycle in find_cycles(graph) for sid in cycle}
    ordered: list[SegmentDefinition] = []
    placed: set[str] = set()

    def place(sid: str, trail: frozenset[str]) -> None:
        if sid in placed or sid in cyclic or sid in trail:
            return
        for ref in sorted(graph[sid]):
            place(ref, trail | {sid})
        if all(ref in placed for ref in graph[sid]):
            placed.add(sid)
            ordered.append(by_id[sid])

    for segment in sorted(segments, key=lambda s: s.id):
        place(segment.id, frozenset())
    unusable = sorted(set(by_id) - placed)
    return ordered, unusable


def _dependents_closure(ordered: Sequence[SegmentDefinition]) -> list[set[int]]:
    """For each segment, itself and every segment that (transitively) refers to it."""
    position = {s.id: i for i, s in enumerate(ordered)}
    closure = [{i} for i in range(len(ordered))]
    for i in reversed(range(len(ordered))):
        for ref in referenced_segments(ordered[i].rule):
            if ref in position:
                closure[position[ref]] |= closure[i]
    # A dependency sits before its dependents, so one backward pass leaves dependents complete
    # only for direct links; repeat until nothing grows (reference chains are short).
    changed = True
    while changed:
        changed = False
        for i, s in enumerate(ordered):
            for ref in referenced_segments(s.rule):
                if ref in position and not closure[i] <= closure[position[ref]]:
                    closure[position[ref]] |= closure[i]
                    changed = True
    return closure


def _window_due(key: str, windows: tuple[int, ...]) -> DueFn:
    """The next moment one of the key's timestamps leaves one of its windows."""

    def due(p: State, now: int) -> int | None:
        times = p["times"].get(key)
        if not times:
            return None
        soonest = None
        for window in windows:
            for t in reversed(times):  # oldest first: the first still inside leaves first
                if t + window > now:
                    if soonest is None or t + window < soonest:
                        soonest = t + window
                    break
        return soonest

    return due


def _recency_due(key: str, first: bool, span: int) -> DueFn:
    def due(p: State, now: int) -> int | None:
        seen = p.get("firsts", {}).get(key)
        if seen is None:
            return None
        moment = (seen[0] if first else seen[1]) + span
        return moment if moment > now else None

    return due


def _attribute_due(name: str, condition: Any) -> DueFn:
    def due(p: State, now: int) -> int | None:
        entry = p.get("traits", {}).get(name)
        if entry is None or entry[0] is None:
            return None
        return condition.flips_at(True, entry[0], now)

    return due


def _predicate(rule: Rule) -> Predicate:
    """The rule as a closure over (profile, now, subscriber id, members so far): the hot path."""
    if isinstance(rule, PerformedRule):
        spec = rule.performed
        key, low, high, window = spec.counter_key, spec.at_least, spec.at_most, spec.window_ms
        if window is None:
            if high is None:
                return lambda p, now, sid, m: p["counts"].get(key, 0) >= low
            return lambda p, now, sid, m: low <= p["counts"].get(key, 0) <= high

        def windowed(p: State, now: int, sid: str, m: Mapping[str, int]) -> bool:
            edge = now - window
            n = 0
            for t in p["times"].get(key, ()):
                if t <= edge:
                    break
                n += 1
            return n >= low and (high is None or n <= high)

        return windowed
    if isinstance(rule, (FirstPerformedRule, LastPerformedRule)):
        first = isinstance(rule, FirstPerformedRule)
        spec = rule.first_performed if first else rule.last_performed  # type: ignore[union-attr]
        key, span, recent, slot = spec.counter_key, spec.span_ms, spec.recent, 0 if first else 1

        def recency(p: State, now: int, sid: str, m: Mapping[str, int]) -> bool:
            seen = p["firsts"].get(key)
            if seen is None:
                return False
            return (seen[slot] > now - span) if recent else (seen[slot] <= now - span)

        return recency
    if isinstance(rule, AttributeRule):
        checks = tuple(rule.attribute.items())

        def attribute(p: State, now: int, sid: str, m: Mapping[str, int]) -> bool:
            traits = p["traits"]
            for name, condition in checks:
                entry = traits.get(name)
                present = entry is not None and entry[0] is not None
                if not condition.holds(present, entry[0] if present else None, now):
                    return False
            return True

        return attribute
    if isinstance(rule, NotOpenedLastRule):
        n = rule.not_opened_last
        return lambda p, now, sid, m: len(p["emails"]) >= n and not any(e[2] for e in p["emails"][-n:])
    if isinstance(rule, SubscribedRule):
        list_id = rule.subscribed.list

        def subscribed(p: State, now: int, sid: str, m: Mapping[str, int]) -> bool:
            consent = p["consent"]
            own = consent.get(list_id)
            overall = consent.get(GLOBAL_LIST)
            return own is not None and own[0] == "subscribed" and (overall is None or overall[0] not in OPT_OUTS)

        return subscribed
    if isinstance(rule, BucketRule):
        bucket = rule.bucket
        return lambda p, now, sid, m: bucket.holds(sid)
    if isinstance(rule, SegmentRefRule):
        ref = rule.segment
        return lambda p, now, sid, m: ref in m
    if isinstance(rule, (AllRule, AnyRule)):
        children = tuple(_predicate(c) for c in (rule.all if isinstance(rule, AllRule) else rule.any))
        if isinstance(rule, AllRule):

            def every(p: State, now: int, sid: str, m: Mapping[str, int]) -> bool:
                for child in children:
                    if not child(p, now, sid, m):
                        return False
                return True

            return every

        def some(p: State, now: int, sid: str, m: Mapping[str, int]) -> bool:
            for child in children:
                if child(p, now, sid, m):
                    return True
            return False

        return some
    assert isinstance(rule, NotRule)
    negated = _predicate(rule.negated)
    return lambda p, now, sid, m: not negated(p, now, sid, m)


# --- the fold ---------------------------------------------------------------------------------


def apply_record(
    segments: Sequence[SegmentDefinition] | CompiledSegments,
    profile: Mapping[str, Any],
    record: Observation,
    backfill: bool = False,
) -> tuple[dict[str, Any], list[SegmentMembershipChanged]]:
    """Fold one record into a subscriber's profile; return the new profile and membership changes.

    A redelivered record changes nothing and the very same profile object comes back, so the
    caller can skip the write. Windows that expired before the record's time are processed first,
    each at its own moment. `backfill` marks the changes as computed over recorded history.
    """
    compiled = compile_segments(segments)
    recent: str = profile.get("recent", "")
    digest = event_digest(record.record_id)[:DIGEST_CHARS]
    if _seen(recent, digest):
        return profile, []  # type: ignore[return-value]
    fresh = not profile
    state = _prepared(compiled, profile)
    changes: list[SegmentMembershipChanged] = []
    if not fresh and record.at > state["clock"]:
        changes += _expire(compiled, state, record.subscriber_id, record.at, inclusive=False, backfill=backfill)
    now = max(state["clock"], record.at) if not fresh else record.at
    state["clock"] = now
    affected = set(_fold(compiled, state, record, now))
    if fresh or profile.get("defs") != compiled.fingerprint:
        affected = set(compiled.everything)
    elif state.get("due") is not None and state["due"] <= now:
        affected |= compiled.by_time
    state["recent"] = (recent + digest)[-RECENT_KEPT * DIGEST_CHARS:]
    changes += _evaluate(compiled, state, record.subscriber_id, now, affected, [record.record_id], backfill)
    _schedule(compiled, state, now)
    return state, changes


def advance(
    segments: Sequence[SegmentDefinition] | CompiledSegments,
    profile: Mapping[str, Any],
    subscriber_id: str,
    now: datetime,
) -> tuple[dict[str, Any], list[SegmentMembershipChanged]]:
    """Let time pass to `now` (a timer fired): every expiry due by then is processed at its moment.

    An empty profile (an unknown subscriber) stays empty: nobody is in a segment before their
    first record. The same object comes back when nothing was due.
    """
    compiled = compile_segments(segments)
    now_ms = to_ms(now)
    if not profile:
        return dict(profile), []
    stale = profile.get("defs") != compiled.fingerprint
    if not stale and (profile.get("due") is None or profile["due"] > now_ms) and profile.get("clock", 0) >= now_ms:
        return profile, []  # type: ignore[return-value]
    state = _prepared(compiled, profile)
    changes = _expire(compiled, state, subscriber_id, now_ms, inclusive=True, backfill=False)
    if now_ms > state["clock"]:
        state["clock"] = now_ms
    if stale:
        tag = f"redefined@{from_ms(state['clock']).isoformat()}"
        changes += _evaluate(compiled, state, subscriber_id, state["clock"], set(compiled.everything), [tag], False)
    _schedule(compiled, state, state["clock"])
    return state, changes


def next_due(profile: Mapping[str, Any]) -> datetime | None:
    """When this profile's next window or duration expires, if any."""
    due = profile.get("due")
    return from_ms(due) if due is not None else None


def members_of(profile: Mapping[str, Any]) -> dict[str, int]:
    """The segments (id -> version) a profile is in."""
    return dict(profile.get("members", {}))


def _seen(recent: str, digest: str) -> bool:
    start = recent.find(digest)
    while start != -1:
        if start % DIGEST_CHARS == 0:
            return True
        start = recent.find(digest, start + 1)
    return False


def _prepared(compiled: CompiledSegments, profile: Mapping[str, Any]) -> State:
    """A copy of the profile holding exactly the parts the live rules need (nested parts copied)."""
    stale = profile.get("defs") != compiled.fingerprint
    counts = profile.get("counts", {})
    times = profile.get("times", {})
    firsts = profile.get("firsts", {})
    traits = profile.get("traits", {})
    consent = profile.get("consent", {})
    members = profile.get("members", {})
    if stale:
        counts = {k: v for k, v in counts.items() if k in compiled.count_keys}
        times = {k: v for k, v in times.items() if k in compiled.window_keys}
        firsts = {k: v for k, v in firsts.items() if k in compiled.recency_keys}
        traits = {k: v for k, v in traits.items() if k in compiled.trait_names}
        consent = {k: v for k, v in consent.items() if k in compiled.consent_lists}
        # Segments no longer defined drop out silently; their consumers stop with them.
        members = {k: v for k, v in members.items() if k in compiled.ids}
    emails = profile.get("emails", [])
    if compiled.emails_kept < len(emails):
        emails = emails[len(emails) - compiled.emails_kept:]
    return {
        "counts": dict(counts),
        "times": dict(times),
        "firsts": dict(firsts),
        "traits": dict(traits),
        "emails": list(emails),
        "consent": dict(consent),
        "members": dict(members),
        "recent": profile.get("recent", ""),
        "defs": compiled.fingerprint,
        "clock": profile.get("clock", 0),
        "due": profile.get("due"),
    }


def _fold(compiled: CompiledSegments, state: State, record: Observation, now: int) -> set[int]:
    """Apply the record to the state; return the segments whose inputs changed."""
    affected: set[int] = set()
    for event_type in record.types:
        for key in compiled.keys_by_type.get(event_type, ()):
            where = _where_of(compiled, key)
            if where and not matches_where(where, record.properties):
                continue
            affected |= compiled.by_key.get(key, frozenset())
            if key in compiled.count_keys:
                state["counts"][key] = state["counts"].get(key, 0) + 1
            if key in compiled.window_keys:
                _, _, keep, widest = compiled.window_keys[key]
                if record.at > now - widest:
                    merged = sorted([*state["times"].get(key, ()), record.at], reverse=True)[:keep]
                    state["times"][key] = merged
            if key in compiled.recency_keys:
                seen = state["firsts"].get(key)
                state["firsts"][key] = [record.at, record.at] if seen is None else [min(seen[0], record.at), max(seen[1], record.at)]
    for name, value in record.traits.items():
        if name not in compiled.trait_names or not (value is None or is_scalar(value)):
            continue
        current = state["traits"].get(name)
        if current is None or record.at >= current[1]:
            if current is None or current[0] != value or type(current[0]) is not type(value):
                affected |= compiled.by_trait.get(name, frozenset())
            state["traits"][name] = [value, record.at]
    if compiled.emails_kept and record.intent:
        affected |= _fold_email(compiled, state, record)
    if record.consent is not None and record.consent[0] in compiled.consent_lists:
        list_id, status = record.consent
        current = state["consent"].get(list_id)
        if current is None or record.at >= current[1]:
            state["consent"][list_id] = [status, record.at]
            affected |= compiled.by_consent
    _prune(compiled, state, now)
    return affected


def _fold_email(compiled: CompiledSegments, state: State, record: Observation) -> frozenset[int]:
    intent = event_digest(record.intent)
    emails: list[list[Any]] = state["emails"]
    position = next((i for i, e in enumerate(emails) if e[1] == intent), None)
    if record.sends and position is None:
        emails.append([record.at, intent, 0])
        emails.sort(key=lambda e: (e[0], e[1]))
        del emails[: max(0, len(emails) - compiled.emails_kept)]
        return compiled.by_emails
    if record.opens and position is not None and not emails[position][2]:
        emails[position] = [emails[position][0], intent, 1]
        return compiled.by_emails
    return frozenset()


def _where_of(compiled: CompiledSegments, key: str) -> Mapping[str, Condition]:
    spec = compiled.count_keys.get(key) or compiled.window_keys.get(key) or compiled.recency_keys.get(key)
    return spec[1] if spec else {}


def _prune(compiled: CompiledSegments, state: State, now: int) -> None:
    times = state["times"]
    for key in list(times):
        _, _, _, widest = compiled.window_keys[key]
        kept = [t for t in times[key] if t > now - widest]
        if kept:
            times[key] = kept
        else:
            del times[key]


def _expire(
    compiled: CompiledSegments, state: State, subscriber_id: str, until: int, inclusive: bool, backfill: bool
) -> list[SegmentMembershipChanged]:
    """Process every expiry before `until` (or at it, when `inclusive`), each at its own moment."""
    changes: list[SegmentMembershipChanged] = []
    while state.get("due") is not None and (state["due"] <= until if inclusive else state["due"] < until):
        moment = state["due"]
        state["clock"] = moment
        _prune(compiled, state, moment)
        tag = f"expired@{from_ms(moment).isoformat()}"
        changes += _evaluate(compiled, state, subscriber_id, moment, set(compiled.by_time), [tag], backfill)
        _schedule(compiled, state, moment)
    return changes


def _schedule(compiled: CompiledSegments, state: State, now: int) -> None:
    candidates = [due for fn in compiled.due_fns if (due := fn(state, now)) is not None]
    state["due"] = min(candidates) if candidates else None


def _evaluate(
    compiled: CompiledSegments,
    state: State,
    subscriber_id: str,
    now: int,
    affected: set[int],
    causes: list[str],
    backfill: bool,
) -> list[SegmentMembershipChanged]:
    members: dict[str, int] = state["members"]
    changes: list[SegmentMembershipChanged] = []
    for i in sorted(affected):
        segment = compiled.segments[i]
        is_member = compiled.predicates[i](state, now, subscriber_id, members)
        was_member = segment.id in members
        if is_member:
            members[segment.id] = segment.version
        else:
            members.pop(segment.id, None)
        if is_member != was_member:
            changes.append(_change(segment, subscriber_id, "entered" if is_member else "exited", now, causes, backfill))
    return changes


def _change(
    segment: SegmentDefinition, subscriber_id: str, change: str, now: int, causes: list[str], backfill: bool
) -> SegmentMembershipChanged:
    marked = ["backfill", *causes] if backfill else list(causes)
    # Every field is built here from validated parts, so validation is skipped (a third of the cost
    # of a change on the hot path).
    return SegmentMembershipChanged.model_construct(
        change_id=stable_id(segment.id, str(segment.version), subscriber_id, change, *marked),
        segment_id=segment.id,
        segment_version=segment.version,
        subscriber_id=subscriber_id,
        change=change,  # type: ignore[arg-type]
        occurred_at=from_ms(now),
        cause_event_ids=marked,
        schema_version=1,
    )


__all__ = [
    "EMAIL_TYPES",
    "CompiledSegments",
    "Observation",
    "advance",
    "apply_record",
    "compile_segments",
    "members_of",
    "next_due",
    "observe_consent",
    "observe_delivery",
    "observe_event",
]
