"""The journey engine: a pure fold of one subscriber's journey state over events, segment changes
and timers. The live processor and `tidings journeys simulate` run this same code.

State (JSON-able, one per subscriber):

```
{"traits": {...}, "recent": [event digests],
 "active": {enrollment_id: enrollment},            # enrollment_id = "<journey>|<entry>"
 "history": {journey_id: {"entries": n, "keys": {entry_key: [count, last_entered_iso]}}}}
```

An enrollment records the journey version it runs on, the step it stands at (`at`, None once its
steps are done), when that step is due (`due`, for waits) and, while a goal window is open, until
when a goal still counts (`goal_until`). A wait step stores `due` in the state; the processor mirrors
every due time into a durable timers table (`timers_of`) and calls `fire_due` when the clock passes
it. Firing is idempotent: it acts only on enrollments whose `due` has passed, and moves them on, so a
replayed or doubled timer finds nothing to do.

Every effect has a deterministic id: a send intent's id is derived from (journey, version, step,
subscriber, entry), where the entry is the trigger key (or the subscriber) plus `#n` for the n-th
re-entry. Every enrollment, step, branch, wait, exit, goal, holdout and skip is a `JourneyDecision`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import field_validator

from domain.conditions import lookup, matches_where
from domain.events import Contract, EventEnvelope, SegmentMembershipChanged, SendIntent, stable_id
from domain.journey_language import (
    WEEKDAYS,
    AllCond,
    AnyCond,
    AttributeCond,
    BranchStep,
    Cond,
    EventTrigger,
    ExitStep,
    JourneyDefinition,
    NotCond,
    SegmentCond,
    SegmentTrigger,
    SendStep,
    SetStep,
    SplitStep,
    TriggerCond,
    WaitForStep,
    WaitStep,
    WaitUntilDateStep,
    WaitUntilTimeStep,
    WebhookStep,
)
from domain.subscriber_state import already_applied, merge_traits, remember

DecisionKind = Literal[
    "entered", "step", "sent", "skipped", "wait", "resumed", "branch", "holdout", "set", "webhook",
    "goal", "exited",
]
KEYS_REMEMBERED = 100
MAX_STEPS_PER_PASS = 500  # a journey is a tree, so this is never reached; it guards against a bug looping


class JourneyDecision(Contract):
    """What a journey decided for one subscriber and why: the audit trail of enrollments.

    `event_id` is the event (or segment change id) that caused the decision; for a timer it is the
    event that started the enrollment. `entry` names the enrollment (trigger key, `#n` on re-entry).
    """

    decision_id: str
    journey_id: str
    journey_version: int
    subscriber_id: str
    kind: DecisionKind
    step_id: str = ""
    reason: str = ""
    event_id: str
    occurred_at: datetime
    schema_version: int = 1

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class SetAttributes(Contract):
    """Traits a journey's `set` step wrote; the processor publishes them as an internal identify event."""

    event: EventEnvelope


@dataclass(frozen=True)
class JourneyOutcome:
    state: dict[str, Any]
    intents: list[SendIntent] = field(default_factory=list)
    decisions: list[JourneyDecision] = field(default_factory=list)
    events: list[EventEnvelope] = field(default_factory=list)


class JourneyCatalog:
    """The latest version of each live journey plus every older version seen, so that enrollments
    stay on the version they started with."""

    def __init__(self, journeys: Iterable[JourneyDefinition] = ()) -> None:
        self.latest: dict[str, JourneyDefinition] = {}
        self.versions: dict[tuple[str, int], JourneyDefinition] = {}
        self.update(journeys)

    def update(self, journeys: Iterable[JourneyDefinition]) -> None:
        """Make `journeys` the live set; versions seen before stay known."""
        self.latest = {}
        for journey in journeys:
            self.latest[journey.id] = journey
            self.versions[(journey.id, journey.version)] = journey
        self.by_priority = sorted(self.latest.values(), key=lambda j: (-j.priority, j.id))

    def version(self, journey_id: str, version: int) -> JourneyDefinition | None:
        return self.versions.get((journey_id, version))


def as_catalog(journeys: Sequence[JourneyDefinition] | JourneyCatalog) -> JourneyCatalog:
    return journeys if isinstance(journeys, JourneyCatalog) else JourneyCatalog(journeys)


# --- entry points --------------------------------------------------------------------------------


def apply_event(
    journeys: Sequence[JourneyDefinition] | JourneyCatalog,
    state: dict[str, Any],
    event: EventEnvelope,
    now: datetime,
    members: Collection[str] = (),
) -> JourneyOutcome:
    """Fold one event: goals, exit rules and waits of running enrollments first, then new entries.

    `members` are the segments the subscriber is in now (for branch conditions). When the event
    changes nothing (a redelivery, or an event that touches no journey and carries no traits) the
    same state object comes back, so the caller can skip the write.
    """
    catalog = as_catalog(journeys)
    recent: list[str] = state.get("recent", [])
    if already_applied(recent, event.event_id):
        return JourneyOutcome(state)
    active = state.get("active", {})
    triggered = [j for j in catalog.by_priority if _event_triggers(j, event)]
    if not (triggered or active or event.traits):
        return JourneyOutcome(state)
    fold = _Fold(catalog, state, now, members, event.subscriber_id, event.event_id)
    fold.traits = merge_traits(fold.traits, event.traits)
    for enrollment_id in sorted(fold.active):
        fold.on_event(enrollment_id, event)
    for journey in triggered:
        key = _entry_key(journey, event)
        trigger = {"type": event.type, "properties": dict(event.properties)}
        fold.enter(journey, key, trigger)
    fold.recent = remember(fold.recent, event.event_id)
    return fold.outcome()


def apply_segment_change(
    journeys: Sequence[JourneyDefinition] | JourneyCatalog,
    state: dict[str, Any],
    change: SegmentMembershipChanged,
    now: datetime,
    members: Collection[str] = (),
) -> JourneyOutcome:
    """Fold one segment membership change: exit rules, segment waits and segment triggers."""
    catalog = as_catalog(journeys)
    recent: list[str] = state.get("recent", [])
    if already_applied(recent, change.change_id):
        return JourneyOutcome(state)
    triggered = [
        j for j in catalog.by_priority
        if isinstance(j.trigger, SegmentTrigger) and j.trigger.segment == change.segment_id and j.trigger.change == change.change
    ]
    if not (triggered or state.get("active")):
        return JourneyOutcome(state)
    fold = _Fold(catalog, state, now, members, change.subscriber_id, change.change_id)
    for enrollment_id in sorted(fold.active):
        fold.on_segment_change(enrollment_id, change)
    for journey in triggered:
        trigger = {"type": f"segment.{change.change}", "properties": {"segment_id": change.segment_id}}
        fold.enter(journey, change.subscriber_id, trigger)
    fold.recent = remember(fold.recent, change.change_id)
    return fold.outcome()


def fire_due(
    journeys: Sequence[JourneyDefinition] | JourneyCatalog,
    state: dict[str, Any],
    now: datetime,
    members: Collection[str] = (),
) -> JourneyOutcome:
    """Resume every enrollment whose due time has passed (in due order); nothing else changes.

    Calling it again, or with an earlier `now`, does nothing: a fired enrollment has moved on.
    """
    due = [(e["due"], eid) for eid, e in state.get("active", {}).items() if e.get("due") and _at(e["due"]) <= now]
    expired = [eid for eid, e in state.get("active", {}).items() if _goal_closed(e, now)]
    if not (due or expired):
        return JourneyOutcome(state)
    subscriber = state.get("subscriber_id", "")
    fold = _Fold(as_catalog(journeys), state, now, members, subscriber, "")
    for _, enrollment_id in sorted(due):
        fold.on_timer(enrollment_id)
    return fold.outcome()


def timers_of(state: Mapping[str, Any]) -> dict[str, str]:
    """The durable timers a state needs: timer id -> due time (ISO, UTC)."""
    return {
        timer_id(enrollment_id, e): e["due"]
        for enrollment_id, e in state.get("active", {}).items()
        if e.get("due")
    }


def timer_id(enrollment_id: str, enrollment: Mapping[str, Any]) -> str:
    return stable_id(enrollment_id, str(enrollment.get("version")), str(enrollment.get("at")), enrollment["due"])[:16]


def next_due(state: Mapping[str, Any]) -> datetime | None:
    dues = [_at(e["due"]) for e in state.get("active", {}).values() if e.get("due")]
    return min(dues) if dues else None


# --- the fold ----------------------------------------------------------------------------------


def _event_triggers(journey: JourneyDefinition, event: EventEnvelope) -> bool:
    trigger = journey.trigger
    return isinstance(trigger, EventTrigger) and event.type == trigger.event and matches_where(trigger.where, event.properties)


def _entry_key(journey: JourneyDefinition, event: EventEnvelope) -> str | None:
    trigger = journey.trigger
    if not isinstance(trigger, EventTrigger) or not trigger.key:
        return event.subscriber_id
    return _key_value(trigger.key, event)


def _key_value(path: str, event: EventEnvelope) -> str | None:
    present, value = lookup({"properties": event.properties}, path)
    if not present or value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def _goal_closed(enrollment: Mapping[str, Any], now: datetime) -> bool:
    return enrollment.get("at") is None and bool(enrollment.get("goal_until")) and _at(enrollment["goal_until"]) < now


class _Fold:
    """One pass over one subscriber's state, collecting intents, decisions and internal events."""

    def __init__(
        self, catalog: JourneyCatalog, state: dict[str, Any], now: datetime, members: Collection[str],
        subscriber_id: str, cause_id: str,
    ) -> None:
        self.catalog = catalog
        self.now = now
        self.members = set(members)
        self.subscriber_id = subscriber_id or state.get("subscriber_id", "")
        self.cause_id = cause_id
        self.traits: dict[str, Any] = dict(state.get("traits", {}))
        self.recent: list[str] = state.get("recent", [])
        self.active: dict[str, dict[str, Any]] = {k: dict(v) for k, v in state.get("active", {}).items()}
        self.history: dict[str, Any] = {k: {"entries": v["entries"], "keys": dict(v["keys"])} for k, v in state.get("history", {}).items()}
        for journey_id, old in state.get("enrollments", {}).items():
            # States written before enrollments had steps: `{journey: {entries, entry_key, entered_at}}`.
            self.history.setdefault(
                journey_id, {"entries": old.get("entries", 1), "keys": {old.get("entry_key", ""): [old.get("entries", 1), old.get("entered_at")]}}
            )
        self.intents: list[SendIntent] = []
        self.decisions: list[JourneyDecision] = []
        self.events: list[EventEnvelope] = []
        self._purge_closed_goals()

    def outcome(self) -> JourneyOutcome:
        state = {
            "subscriber_id": self.subscriber_id,
            "traits": self.traits,
            "active": self.active,
            "history": self.history,
            "recent": self.recent,
        }
        return JourneyOutcome(state, self.intents, self.decisions, self.events)

    def _purge_closed_goals(self) -> None:
        for enrollment_id in [k for k, e in self.active.items() if _goal_closed(e, self.now)]:
            del self.active[enrollment_id]

    # decisions

    def decide(self, enrollment: Mapping[str, Any], kind: str, step_id: str = "", reason: str = "", salt: str = "") -> None:
        journey_id, version = enrollment["journey"], enrollment["version"]
        cause = self.cause_id or enrollment.get("trigger_event_id", "")
        self.decisions.append(
            JourneyDecision(
                decision_id=stable_id(
                    journey_id, str(version), self.subscriber_id, enrollment["entry"], kind, step_id, reason, salt
                ),
                journey_id=journey_id,
                journey_version=version,
                subscriber_id=self.subscriber_id,
                kind=kind,  # type: ignore[arg-type]
                step_id=step_id,
                reason=reason,
                event_id=cause,
                occurred_at=self.now,
            )
        )

    # entering

    def enter(self, journey: JourneyDefinition, key: str | None, trigger: dict[str, Any]) -> None:
        probe = {"journey": journey.id, "version": journey.version, "entry": key or "", "trigger_event_id": self.cause_id}
        if key is None:
            self.decide(probe, "skipped", reason="no_entry_key", salt=self.cause_id)
            return
        if self._running_same_key(journey.id, key):
            self.decide(probe, "skipped", reason="already_enrolled", salt=self.cause_id)
            return
        history = self.history.setdefault(journey.id, {"entries": 0, "keys": {}})
        count, last = history["keys"].get(key, [0, None])
        refusal = self._refusal(journey, history["entries"], count, last)
        if refusal:
            self.decide(probe, "skipped", reason=refusal, salt=self.cause_id)
            return
        entry = key if count == 0 else f"{key}#{count + 1}"
        enrollment_id = f"{journey.id}|{entry}"
        history["entries"] += 1
        history["keys"][key] = [count + 1, self.now.isoformat()]
        if len(history["keys"]) > KEYS_REMEMBERED:
            oldest = sorted(history["keys"], key=lambda k: history["keys"][k][1])[: len(history["keys"]) - KEYS_REMEMBERED]
            for old in oldest:
                del history["keys"][old]
        enrollment: dict[str, Any] = {
            "journey": journey.id,
            "version": journey.version,
            "key": key,
            "entry": entry,
            "entered_at": self.now.isoformat(),
            "trigger_event_id": self.cause_id,
            "trigger": trigger,
            "at": journey.plan.first,
            "due": None,
            "goal_until": (self.now + timedelta(seconds=journey.goal.within_seconds)).isoformat() if journey.goal else None,
        }
        self.active[enrollment_id] = enrollment
        self.decide(enrollment, "entered", reason=f"trigger:{trigger['type']}")
        self.run(enrollment_id, journey)

    def _running_same_key(self, journey_id: str, key: str) -> bool:
        return any(
            e["journey"] == journey_id and e["key"] == key and e.get("at") is not None for e in self.active.values()
        )

    def _refusal(self, journey: JourneyDefinition, entries: int, key_count: int, last: str | None) -> str:
        if journey.entry_limit is not None and entries >= journey.entry_limit:
            return "entry_limit_reached"
        if key_count == 0:
            return ""
        if journey.re_entry == "never":
            return "re_entry_never"
        if journey.re_entry == "after" and last and self.now - _at(last) < timedelta(seconds=journey.re_entry_after_seconds):
            return "re_entry_too_soon"
        return ""

    # resolving the version an enrollment runs on

    def resolve(self, enrollment_id: str) -> JourneyDefinition | None:
        """The definition this enrollment runs on; None after exiting it (journey removed or replaced)."""
        enrollment = self.active[enrollment_id]
        journey_id, version = enrollment["journey"], enrollment["version"]
        latest = self.catalog.latest.get(journey_id)
        pinned = self.catalog.version(journey_id, version)
        if latest is None:
            self.finish(enrollment_id, "exited", "journey_unpublished")
            return None
        if latest.version <= version:
            return pinned or latest
        policy = latest.on_publish
        if policy == "stay" and pinned is not None:
            return pinned
        if policy == "exit":
            self.finish(enrollment_id, "exited", f"version_replaced:v{latest.version}")
            return None
        # `move`, or `stay` when the pinned version is no longer known to this process.
        at = enrollment.get("at")
        if at is not None and at not in latest.plan.steps:
            self.finish(enrollment_id, "exited", f"step_removed_in:v{latest.version}")
            return None
        reason = f"moved_to:v{latest.version}" if policy == "move" else f"pinned_version_unavailable:v{latest.version}"
        self.decide(enrollment, "step", step_id=at or "", reason=reason)
        enrollment["version"] = latest.version
        if at is None and enrollment.get("goal_until") and latest.goal is None:
            enrollment["goal_until"] = None
        return latest

    # reacting to events, segment changes and timers

    def on_event(self, enrollment_id: str, event: EventEnvelope) -> None:
        if enrollment_id not in self.active:
            return
        journey = self.resolve(enrollment_id)
        if journey is None:
            return
        enrollment = self.active[enrollment_id]
        goal = journey.goal
        if goal and event.type == goal.event and matches_where(goal.where, event.properties) and self._key_matches(
            goal.match_key, journey, enrollment, event
        ) and enrollment.get("goal_until") and self.now <= _at(enrollment["goal_until"]):
            self.decide(enrollment, "goal", reason=f"event:{event.type}")
            enrollment["goal_until"] = None
            if enrollment.get("at") is None or goal.exit:
                self.finish(enrollment_id, "exited" if enrollment.get("at") is not None else "", "goal_reached")
                return
        if enrollment.get("at") is None:
            return
        for rule in journey.exit_when:
            if rule.event and rule.event == event.type and matches_where(rule.where, event.properties) and self._key_matches(
                rule.match_key, journey, enrollment, event
            ):
                self.finish(enrollment_id, "exited", f"exit_when:{event.type}")
                return
        step = journey.plan.steps.get(enrollment["at"])
        if isinstance(step, WaitForStep) and step.event == event.type and matches_where(step.where, event.properties) and self._key_matches(
            step.match_key, journey, enrollment, event
        ):
            self.decide(enrollment, "resumed", step.id, reason=f"event:{event.type}")
            enrollment["due"] = None
            enrollment["at"] = journey.plan.path_start[(step.id, "event")]
            self.run(enrollment_id, journey)

    def on_segment_change(self, enrollment_id: str, change: SegmentMembershipChanged) -> None:
        if self.active[enrollment_id].get("at") is None:
            return
        journey = self.resolve(enrollment_id)
        if journey is None:
            return
        enrollment = self.active[enrollment_id]
        if change.change == "exited" and any(r.left_segment == change.segment_id for r in journey.exit_when):
            self.finish(enrollment_id, "exited", f"left_segment:{change.segment_id}")
            return
        step = journey.plan.steps.get(enrollment["at"])
        if isinstance(step, WaitForStep) and step.segment == change.segment_id and step.change == change.change:
            self.decide(enrollment, "resumed", step.id, reason=f"segment_{change.change}:{change.segment_id}")
            enrollment["due"] = None
            enrollment["at"] = journey.plan.path_start[(step.id, "event")]
            self.run(enrollment_id, journey)

    def on_timer(self, enrollment_id: str) -> None:
        enrollment = self.active.get(enrollment_id)
        if enrollment is None or not enrollment.get("due") or _at(enrollment["due"]) > self.now:
            return
        journey = self.resolve(enrollment_id)
        if journey is None:
            return
        enrollment = self.active[enrollment_id]
        step = journey.plan.steps.get(enrollment["at"])
        enrollment["due"] = None
        if isinstance(step, WaitForStep):
            self.decide(enrollment, "resumed", step.id, reason="timeout")
            enrollment["at"] = journey.plan.path_start[(step.id, "timeout")]
        else:
            self.decide(enrollment, "resumed", enrollment["at"], reason="wait_over")
            enrollment["at"] = journey.plan.next.get(enrollment["at"])
        self.run(enrollment_id, journey)

    def _key_matches(self, wanted: bool, journey: JourneyDefinition, enrollment: Mapping[str, Any], event: EventEnvelope) -> bool:
        if not wanted:
            return True
        trigger = journey.trigger
        return isinstance(trigger, EventTrigger) and _key_value(trigger.key, event) == enrollment["key"]

    def finish(self, enrollment_id: str, kind: str, reason: str) -> None:
        """Steps are over: keep the enrollment only while its goal window is open."""
        enrollment = self.active[enrollment_id]
        if kind:
            self.decide(enrollment, kind, step_id=enrollment.get("at") or "", reason=reason)
        enrollment["at"] = None
        enrollment["due"] = None
        if not enrollment.get("goal_until") or reason == "goal_reached":
            del self.active[enrollment_id]

    # running steps

    def run(self, enrollment_id: str, journey: JourneyDefinition) -> None:
        """Run steps from the enrollment's `at` until a wait, an exit or the end."""
        enrollment = self.active[enrollment_id]
        plan = journey.plan
        for _ in range(MAX_STEPS_PER_PASS):
            step_id = enrollment["at"]
            if step_id is None:
                self.finish(enrollment_id, "exited", "completed")
                return
            step = plan.steps[step_id]
            follow = plan.next[step_id]
            if isinstance(step, SendStep):
                self.send(enrollment, journey, step)
            elif isinstance(step, (WaitStep, WaitUntilTimeStep, WaitUntilDateStep, WaitForStep)):
                if self.wait(enrollment, journey, step):
                    return
                if isinstance(step, WaitForStep):
                    follow = plan.path_start[(step.id, "event")]
            elif isinstance(step, BranchStep):
                taken = "then" if self.holds(step.when, enrollment) else "else"
                self.decide(enrollment, "branch", step.id, reason=taken)
                follow = plan.path_start[(step.id, taken)]
            elif isinstance(step, SplitStep):
                variant = split_variant(step, self.subscriber_id, journey.id)
                if variant.holdout:
                    self.decide(enrollment, "holdout", step.id, reason=f"variant:{variant.name}")
                    self.finish(enrollment_id, "exited", "holdout")
                    return
                self.decide(enrollment, "branch", step.id, reason=f"variant:{variant.name}")
                follow = plan.path_start[(step.id, f"variant:{variant.name}")]
            elif isinstance(step, SetStep):
                self.set_attributes(enrollment, journey, step)
            elif isinstance(step, WebhookStep):
                self.decide(enrollment, "webhook", step.id, reason=f"{step.method} {step.url}")
            elif isinstance(step, ExitStep):
                enrollment["at"] = step.id
                self.finish(enrollment_id, "exited", step.reason)
                return
            enrollment["at"] = follow
        raise RuntimeError(f"journey {journey.id} ran {MAX_STEPS_PER_PASS} steps in one pass")

    def wait(self, enrollment: dict[str, Any], journey: JourneyDefinition, step: Any) -> bool:
        """Set the due time; False when there is nothing to wait for (the time has passed)."""
        if isinstance(step, WaitStep):
            due: datetime | None = self.now + timedelta(seconds=step.seconds)
        elif isinstance(step, WaitUntilTimeStep):
            due = next_local_time(self.now, step, self.traits)
        elif isinstance(step, WaitUntilDateStep):
            due = date_attribute(self.traits, step.attribute)
            if due is None:
                self.decide(enrollment, "skipped", step.id, reason=f"no_date_attribute:{step.attribute}")
                return False
            due += timedelta(seconds=step.offset_seconds)
        else:
            if step.segment and (step.segment in self.members) == (step.change == "entered"):
                self.decide(enrollment, "resumed", step.id, reason=f"already_{step.change}:{step.segment}")
                return False
            due = self.now + timedelta(seconds=step.timeout_seconds)
        assert due is not None
        if due <= self.now:
            self.decide(enrollment, "wait", step.id, reason="already_passed")
            return False
        enrollment["due"] = due.astimezone(timezone.utc).isoformat()
        self.decide(enrollment, "wait", step.id, reason=f"until:{enrollment['due']}")
        return True

    def holds(self, cond: Cond, enrollment: Mapping[str, Any]) -> bool:
        if isinstance(cond, SegmentCond):
            return cond.segment in self.members
        if isinstance(cond, AttributeCond):
            return matches_where(cond.attribute, self.traits)
        if isinstance(cond, TriggerCond):
            return matches_where(cond.trigger, enrollment.get("trigger", {}).get("properties", {}))
        if isinstance(cond, AllCond):
            return all(self.holds(c, enrollment) for c in cond.all)
        if isinstance(cond, AnyCond):
            return any(self.holds(c, enrollment) for c in cond.any)
        assert isinstance(cond, NotCond)
        return not self.holds(cond.negated, enrollment)

    def send(self, enrollment: Mapping[str, Any], journey: JourneyDefinition, step: SendStep) -> None:
        email = self.traits.get("email")
        if not isinstance(email, str) or not email:
            self.decide(enrollment, "skipped", step.id, reason="no_email")
            return
        self.intents.append(
            SendIntent(
                intent_id=send_intent_id(journey.id, journey.version, step.id, self.subscriber_id, enrollment["entry"]),
                subscriber_id=self.subscriber_id,
                journey_id=journey.id,
                journey_version=journey.version,
                step_id=step.id,
                template_id=step.send,
                to=email,
                variables={"subscriber": dict(self.traits), "event": dict(enrollment.get("trigger", {}))},
                trigger_event_id=enrollment["trigger_event_id"],
                created_at=self.now,
                transactional=journey.transactional,
                priority=journey.priority,
            )
        )
        self.decide(enrollment, "sent", step.id, reason=f"template:{step.send}")

    def set_attributes(self, enrollment: Mapping[str, Any], journey: JourneyDefinition, step: SetStep) -> None:
        self.traits = merge_traits(self.traits, step.values)
        event_id = stable_id("journey-set", journey.id, str(journey.version), step.id, self.subscriber_id, enrollment["entry"])
        self.events.append(
            EventEnvelope(
                event_id=event_id,
                type="identify",
                subscriber_id=self.subscriber_id,
                occurred_at=self.now,
                received_at=self.now,
                source="internal",
                context={"traits": dict(step.values), "journey": {"id": journey.id, "step_id": step.id}},
            )
        )
        # The event comes back to this fold; its traits are already applied.
        self.recent = remember(self.recent, event_id)
        self.decide(enrollment, "set", step.id, reason=",".join(sorted(step.values)))


def send_intent_id(journey_id: str, version: int, step_id: str, subscriber_id: str, entry: str) -> str:
    return stable_id(journey_id, str(version), step_id, subscriber_id, entry)


def split_bucket(subscriber_id: str, journey_id: str) -> float:
    """A stable number in [0, 100) per subscriber and journey: the same person lands in the same variant."""
    return int(stable_id("split", journey_id, subscriber_id)[:8], 16) % 10000 / 100


def split_variant(step: SplitStep, subscriber_id: str, journey_id: str) -> Any:
    bucket = split_bucket(subscriber_id, journey_id)
    edge = 0.0
    for variant in step.variants:
        edge += variant.percent
        if bucket < edge:
            return variant
    return step.variants[-1]


def next_local_time(now: datetime, step: WaitUntilTimeStep, traits: Mapping[str, Any]) -> datetime:
    """The first moment after `now` at `step.time` on an allowed weekday, in the subscriber's zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = traits.get(step.timezone_trait)
    try:
        zone = ZoneInfo(name) if isinstance(name, str) and name else ZoneInfo(step.default_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo(step.default_timezone)
    local = now.astimezone(zone)
    hour, minute = (int(part) for part in step.time.split(":"))
    allowed = {WEEKDAYS.index(day) for day in step.weekdays}
    for days in range(8):
        day = (local + timedelta(days=days)).date()
        candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        if candidate > local and candidate.weekday() in allowed:
            return candidate.astimezone(timezone.utc)
    raise ValueError("no allowed weekday")  # unreachable: weekdays is never empty


def date_attribute(traits: Mapping[str, Any], name: str) -> datetime | None:
    """A trait read as a date or date-time (ISO 8601; a date means midnight UTC)."""
    present, value = lookup(traits, name)
    if not present or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed


__all__ = [
    "JourneyCatalog",
    "JourneyDecision",
    "JourneyOutcome",
    "apply_event",
    "apply_segment_change",
    "as_catalog",
    "date_attribute",
    "fire_due",
    "next_due",
    "next_local_time",
    "send_intent_id",
    "split_bucket",
    "split_variant",
    "timer_id",
    "timers_of",
]
