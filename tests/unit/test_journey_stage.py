"""The journeys stage over in-memory tables: timers mirror the state, fire once when due, never
early, and neither an unrecovered state nor a stale timer entry loses or repeats a send."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from domain.events import EventEnvelope
from domain.journeys import parse_journey_data, timers_of
from infra.topics import Topic
from processors.app import WorkerContext
from processors.journeys import JourneyStage

T0 = datetime(2026, 4, 1, 12, 0, tzinfo=timezone.utc)


class Table(dict):  # type: ignore[type-arg]
    """Like a Faust table with `default=dict`: a missing key reads as an empty dict."""

    def __missing__(self, key: bytes) -> dict[str, Any]:
        return {}


@dataclass
class FakeTopic:
    topic: Topic
    sent: list[tuple[Topic, bytes, bytes]]

    async def send(self, key: bytes, value: bytes) -> asyncio.Future:  # type: ignore[type-arg]
        self.sent.append((self.topic, key, value))
        done: asyncio.Future = asyncio.get_running_loop().create_future()  # type: ignore[type-arg]
        done.set_result(None)
        return done


@dataclass
class Live:
    journeys: tuple[Any, ...]


@dataclass
class Holder:
    current: Live


@dataclass
class FakeContext:
    now: datetime = T0
    sent: list[tuple[Topic, bytes, bytes]] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    definitions: Holder = field(default_factory=lambda: Holder(Live((parse_journey_data(
        {"id": "j", "trigger": {"event": "go"}, "steps": [{"wait": "10m"}, {"send": "t"}]}),))))

    def clock(self) -> datetime:
        return self.now

    def topic(self, topic: Topic) -> FakeTopic:
        return FakeTopic(topic, self.sent)

    # The real mechanism, sending through this fake's `topic()`.
    emit_durably = WorkerContext.emit_durably

    def intents(self) -> list[bytes]:
        return [value for topic, _, value in self.sent if topic is Topic.SEND_INTENTS]


def go(subscriber: str) -> EventEnvelope:
    return EventEnvelope(event_id=f"go-{subscriber}", type="go", subscriber_id=subscriber, occurred_at=T0,
                         received_at=T0, context={"traits": {"email": f"{subscriber}@example.test"}})


async def test_timers_fire_once_when_due_and_not_before() -> None:
    ctx = FakeContext()
    stage = JourneyStage(ctx, Table(), Table())  # type: ignore[arg-type]
    await stage.on_batch([go("a"), go("b")])

    assert set(stage.timers) == {b"a", b"b"}
    assert list(stage.timers[b"a"].values()) == [(T0 + timedelta(minutes=10)).isoformat()]
    assert await stage.fire_due_timers(T0 + timedelta(minutes=9, seconds=59)) == 0 and ctx.intents() == []
    assert await stage.fire_due_timers(T0 + timedelta(minutes=40)) == 2
    assert len(ctx.intents()) == 2 and dict(stage.timers) == {}
    assert await stage.fire_due_timers(T0 + timedelta(hours=2)) == 0 and len(ctx.intents()) == 2


async def test_an_unrecovered_state_keeps_its_timer_and_a_stale_timer_is_dropped() -> None:
    ctx = FakeContext()
    stage = JourneyStage(ctx, Table(), Table())  # type: ignore[arg-type]
    await stage.on_batch([go("a")])
    timers = dict(stage.timers[b"a"])
    stage.states.clear()  # as if the state's changelog had not been read back yet

    await stage.fire_due_timers(T0 + timedelta(hours=1))

    assert stage.timers[b"a"] == timers and ctx.intents() == []
    stage.states[b"a"] = {"subscriber_id": "a", "active": {}, "history": {}, "traits": {}, "recent": []}
    await stage.fire_due_timers(T0 + timedelta(hours=1))
    assert b"a" not in stage.timers and ctx.intents() == []


async def test_outputs_are_sent_before_the_state_is_written() -> None:
    ctx = FakeContext()
    order: list[str] = []

    class Recording(Table):
        def __setitem__(self, key: bytes, value: Any) -> None:
            order.append(f"state after {len(ctx.sent)} records")
            super().__setitem__(key, value)

    stage = JourneyStage(ctx, Recording(), Table())  # type: ignore[arg-type]
    await stage.on_batch([go("a")])

    assert order == ["state after 2 records"]  # entered + wait decisions went out first
    assert timers_of(stage.states[b"a"]) == stage.timers[b"a"]
