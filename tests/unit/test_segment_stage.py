"""The segments stage's bookkeeping with plain dicts for tables: batches, durable order, the timer
table and its heap, redefinition sweeps marked backfill. (Against Kafka: tests/e2e/test_segment_windows.py.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from domain.events import EventEnvelope
from domain.segments import compile_segments, is_backfill, observe_event, parse_segment_data
from domain.segment_rules import to_ms
from processors.segments import SegmentsStage

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
ACTIVE = parse_segment_data({"id": "active", "rule": {"performed": {"event": "login", "within": "1h"}}})


@dataclass
class Live:
    compiled_segments: Any


@dataclass
class Holder:
    current: Live


@dataclass
class FakeContext:
    definitions: Holder
    log: list[tuple[str, Any]] = field(default_factory=list)

    async def emit_durably(self, records):  # type: ignore[no-untyped-def]
        self.log.append(("emitted", [r[2] for r in records]))


class LoggedTable(dict):
    def __init__(self, name: str, log: list) -> None:
        super().__init__()
        self.name, self.log = name, log

    def __missing__(self, key):  # type: ignore[no-untyped-def]
        return {}

    def __setitem__(self, key, value):  # type: ignore[no-untyped-def]
        self.log.append(("write", self.name))
        super().__setitem__(key, value)


def stage_with(*segments) -> tuple[SegmentsStage, FakeContext]:  # type: ignore[no-untyped-def]
    ctx = FakeContext(Holder(Live(compile_segments(list(segments)))))
    return SegmentsStage(ctx, LoggedTable("profiles", ctx.log), LoggedTable("timers", ctx.log)), ctx  # type: ignore[arg-type]


def last_emitted(ctx: FakeContext) -> list[Any]:
    return [entry for entry in ctx.log if entry[0] == "emitted"][-1][1]


def login(subscriber: str, minute: int) -> Any:
    at = T0 + timedelta(minutes=minute)
    return observe_event(EventEnvelope(event_id=f"{subscriber}-{minute}", type="login", subscriber_id=subscriber,
                                       occurred_at=at, received_at=at))


async def test_a_batch_emits_once_then_writes_timer_before_profile() -> None:
    stage, ctx = stage_with(ACTIVE)

    await stage.on_records([login("a", 0), login("b", 1), login("a", 2)])

    assert [entry[0] for entry in ctx.log] == ["emitted", "write", "write", "write", "write"]
    assert [entry[1] for entry in ctx.log[1:3]] == ["timers", "profiles"]
    assert [c.subscriber_id for c in ctx.log[0][1]] == ["a", "b"]
    assert stage.timers[b"a"] == {"due": to_ms(T0 + timedelta(minutes=62))}  # the later login decides


async def test_due_timers_fire_in_a_batch_and_clear_their_entries() -> None:
    stage, ctx = stage_with(ACTIVE)
    await stage.on_records([login("a", 0), login("b", 30)])

    assert await stage.fire_due(T0 + timedelta(minutes=59)) == 0
    assert await stage.fire_due(T0 + timedelta(minutes=61)) == 1  # a is due at 60, b at 90
    exits = last_emitted(ctx)
    assert [(c.subscriber_id, c.change) for c in exits] == [("a", "exited")]
    assert b"a" not in stage.timers and b"b" in stage.timers


async def test_the_heap_is_rebuilt_from_the_table_after_a_restart() -> None:
    stage, _ = stage_with(ACTIVE)
    await stage.on_records([login("a", 0)])
    restarted, ctx = stage_with(ACTIVE)
    restarted.profiles.update(stage.profiles)
    restarted.timers.update(stage.timers)

    restarted.refresh_index(frozenset({1}), 0.0)

    assert await restarted.fire_due(T0 + timedelta(hours=2)) == 1
    assert [c.change for c in last_emitted(ctx)] == ["exited"]


async def test_a_new_definition_moves_every_profile_over_as_backfill() -> None:
    stage, ctx = stage_with(ACTIVE)
    await stage.on_records([login("a", 0), login("b", 0)])
    twice = parse_segment_data({"id": "active", "rule": {"performed": {"event": "login", "at_least": 2, "within": "1h"}}}, version=2)
    ctx.definitions.current = Live(compile_segments([twice]))

    moved = await stage.redefine_some(T0 + timedelta(minutes=1))

    assert moved == 2
    exits = [c for entry in ctx.log if entry[0] == "emitted" for c in entry[1] if c.change == "exited"]
    assert {c.subscriber_id for c in exits} == {"a", "b"}
    assert all(is_backfill(c) and c.segment_version == 2 for c in exits)
    assert await stage.redefine_some(T0 + timedelta(minutes=2)) == 0


async def test_timer_entries_move_only_earlier_and_an_early_one_is_corrected_when_it_fires() -> None:
    stage, ctx = stage_with(ACTIVE)
    await stage.on_records([login("a", 0)])
    writes_before = sum(1 for entry in ctx.log if entry == ("write", "timers"))

    await stage.on_records([login("a", 30)])  # due moves later: no timer write

    assert sum(1 for entry in ctx.log if entry == ("write", "timers")) == writes_before
    assert stage.timers[b"a"] == {"due": to_ms(T0 + timedelta(minutes=60))}
    assert await stage.fire_due(T0 + timedelta(minutes=61)) == 1
    assert stage.profiles[b"a"]["members"] == {"active": 1}  # still in: the 00:30 login counts
    assert stage.timers[b"a"] == {"due": to_ms(T0 + timedelta(minutes=90))}
    assert await stage.fire_due(T0 + timedelta(minutes=91)) == 1
    assert stage.profiles[b"a"]["members"] == {} and b"a" not in stage.timers
