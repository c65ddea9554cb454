"""Reputation stage: delivery events and operator commands, regrouped by sending domain, folded into
rolling windows and a remediation state machine (domain/reputation.py); snapshots and their controls
on the compacted reputation topic; transitions on the reputation-changes topic.

Every worker also follows the whole reputation topic (connectors/reputation_topic.py) into
`ctx.resources["reputation_controls"]`, and offers the sender `ctx.resources["reputation_gate"]`,
which applies `domain.reputation.admit_send` with durable per-identity send counters (so a warm-up
plan's daily cap holds across restarts).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import MutableMapping
from datetime import datetime, timedelta

import structlog
from faust.web import Request, Response, View

from connectors.reputation_topic import ReputationFollower
from domain import policy, reputation
from domain.events import Contract, DeliveryEvent, ReputationSnapshot, SendIntent, stable_id
from domain.policy import provider_of
from domain.reputation import ReputationChanged, ReputationCommand, Transition
from infra.topics import Topic
from processors.app import WorkerContext
from projections import reputation_counts

log = structlog.get_logger(__name__)

SNAPSHOT_EVERY_SECONDS = 1.0
BATCH_SIZE = 500
BATCH_WITHIN_SECONDS = 0.2


def _sending_domain(value: bytes) -> bytes:
    try:
        return DeliveryEvent.from_bytes(value).sending_domain.encode() or b"unknown"
    except ValueError:
        return b"invalid"


def _command_domain(value: bytes) -> bytes:
    try:
        return ReputationCommand.from_bytes(value).sending_domain.encode()
    except ValueError:
        return b"invalid"


def make_gate(controls: MutableMapping[tuple[str, str], dict], counters: MutableMapping[bytes, dict],  # type: ignore[no-untyped-def]
              ready: threading.Event):
    """The sender's reputation check: a policy Defer/Skip, or None to let the intent go (and count it)."""

    def gate(intent: SendIntent, now: datetime, sending_domain: str) -> policy.Decision | None:
        if not ready.is_set():  # a restarted worker must not send before it knows the pauses and caps
            return policy.Defer(now + timedelta(seconds=2), "reputation:starting")
        scopes = (reputation.ALL_PROVIDERS, provider_of(intent.to))
        limited = []
        for scope in scopes:
            control = controls.get((sending_domain, scope))
            key = f"{sending_domain}|{scope}".encode()
            in_minute, today = reputation.sent_counts(counters[key], now) if control else (0, 0)
            action, reason = reputation.admit_send(control, intent.transactional, in_minute, today)
            if action == "skip":
                return policy.Skip(reason)
            if action == "defer":
                return policy.Defer(reputation.defer_until(control, reason, now), reason)
            if control and (control.get("daily_cap") is not None or control.get("max_per_minute") is not None):
                limited.append(key)
        if not intent.transactional:
            for key in limited:  # durable before the SMTP exchange: the sender flushes the producer first
                counters[key] = reputation.count_send(counters[key], now)
        return None

    return gate


class Metrics:
    """Transition counters and the latest score/state per key, in the Prometheus text format."""

    def __init__(self) -> None:
        self.transitions: Counter[tuple[str, str, str, str, str]] = Counter()

    def render(self, snapshots: dict[tuple[str, str], ReputationSnapshot]) -> str:
        lines = ["# HELP tidings_reputation_transitions_total Reputation state transitions seen by this worker.",
                 "# TYPE tidings_reputation_transitions_total counter"]
        for (domain, provider, traffic, old, new), n in sorted(self.transitions.items()):
            lines.append(f'tidings_reputation_transitions_total{{sending_domain="{domain}",provider="{provider}",'
                         f'traffic="{traffic}",from="{old}",to="{new}"}} {n}')
        lines += ["# HELP tidings_reputation_score Latest 24h score (0-100) per identity and provider.",
                  "# TYPE tidings_reputation_score gauge"]
        for (domain, provider), snap in sorted(snapshots.items()):
            if snap.score is not None:
                lines.append(f'tidings_reputation_score{{sending_domain="{domain}",provider="{provider}"}} {snap.score}')
        lines += ["# HELP tidings_reputation_state Remediation state: 0 healthy, 1 warning, 2 throttled, 3 paused.",
                  "# TYPE tidings_reputation_state gauge"]
        for (domain, provider), snap in sorted(snapshots.items()):
            lines.append(f'tidings_reputation_state{{sending_domain="{domain}",provider="{provider}"}} '
                         f'{reputation.LEVEL[snap.state]}')
        return "\n".join(lines) + "\n"


def register(ctx: WorkerContext) -> None:
    thresholds = reputation.parse_thresholds(ctx.settings.reputation_thresholds, ctx.settings.reputation_cooldown_seconds)
    table = ctx.table("reputation-counts")
    counters = ctx.table("reputation-sends")
    controls: dict[tuple[str, str], dict] = {}
    ready = threading.Event()
    ctx.resources.update(reputation_counts=table, reputation_sends=counters, reputation_controls=controls,
                         reputation_gate=make_gate(controls, counters, ready))
    metrics = Metrics()
    last_published: dict[tuple[str, str], float] = {}
    dirty: set[tuple[str, str]] = set()
    follower_holder: dict[str, ReputationFollower] = {}

    def changes(domain: str, transitions: list[tuple[str, Transition]], state: dict,
                now: datetime) -> list[tuple[Topic, str, Contract]]:
        out: list[tuple[Topic, str, Contract]] = []
        for provider, t in transitions:
            score = reputation.score(reputation.window_counts(
                state["providers"].get(provider, {}).get("windows", {}), reputation.JUDGED_WINDOW), thresholds)
            change = ReputationChanged(
                change_id=stable_id(domain, provider, t.traffic, t.from_state, t.to_state, now.isoformat()),
                sending_domain=domain, provider=provider, traffic=t.traffic, from_state=t.from_state,
                to_state=t.to_state, reason=t.reason, score=score, occurred_at=now,
            )
            metrics.transitions[(domain, provider, t.traffic, t.from_state, t.to_state)] += 1
            log.warning("reputation.transitioned", sending_domain=domain, provider=provider, traffic=t.traffic,
                        from_state=t.from_state, to_state=t.to_state, reason=t.reason, score=score)
            out.append((Topic.REPUTATION_CHANGES, change.key, change))
        return out

    def snapshots(domain: str, providers: set[str], state: dict, now: datetime,
                  force: set[str]) -> list[tuple[Topic, str, Contract]]:
        out: list[tuple[Topic, str, Contract]] = []
        for provider in sorted(providers):
            key = (domain, provider)
            if provider not in force and time.monotonic() - last_published.get(key, 0.0) < SNAPSHOT_EVERY_SECONDS:
                dirty.add(key)
                continue
            last_published[key] = time.monotonic()
            dirty.discard(key)
            snapshot = reputation_counts.snapshot(domain, provider, state, thresholds, now)
            out.append((Topic.REPUTATION, snapshot.key, snapshot))
        return out

    async def publish(domain: str, state: dict, transitions: list[tuple[str, Transition]], touched: set[str],
                      now: datetime, force: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """Transitions and snapshots durable first, then the table state that says they happened."""
        forced = {provider for provider, _ in transitions} | force
        records = changes(domain, transitions, state, now) + snapshots(domain, touched | forced, state, now, forced)
        if records:
            await ctx.emit_durably(records)
        table[domain.encode()] = state

    def repartition_topic(source: Topic):  # type: ignore[no-untyped-def]
        """The repartition topic, named after its source so prefix clean-up (tests, demo) removes it."""
        return ctx.app.topic(f"{source.name(ctx.settings)}-by-sending-domain", key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw", partitions=ctx.settings.partitions,
                             internal=True)

    deliveries_by_domain = repartition_topic(Topic.DELIVERY)
    commands_by_domain = repartition_topic(Topic.REPUTATION_COMMANDS)

    @ctx.app.agent(ctx.topic(Topic.DELIVERY), name="reputation")
    async def reputation_agent(stream):  # type: ignore[no-untyped-def]
        grouped = stream.group_by(_sending_domain, name="delivery-by-sending-domain", topic=deliveries_by_domain)
        async for values in grouped.take(BATCH_SIZE, within=BATCH_WITHIN_SECONDS):
            by_domain: dict[str, list[DeliveryEvent]] = {}
            for value in values:
                try:
                    delivery = DeliveryEvent.from_bytes(value)
                except ValueError:
                    log.warning("reputation.record_invalid")
                    continue
                by_domain.setdefault(delivery.sending_domain or "unknown", []).append(delivery)
            now = ctx.clock()
            for domain, deliveries in by_domain.items():
                state = dict(table[domain.encode()])
                touched: set[str] = set()
                for delivery in deliveries:
                    state = reputation_counts.apply(state, delivery)
                    touched.update(reputation.provider_keys(delivery))
                state, transitions = reputation_counts.judge(state, thresholds, now, only=tuple(touched))
                await publish(domain, state, transitions, touched, now)

    @ctx.app.agent(ctx.topic(Topic.REPUTATION_COMMANDS), name="reputation-commands")
    async def command_agent(stream):  # type: ignore[no-untyped-def]
        async for value in stream.group_by(_command_domain, name="reputation-commands-by-domain",
                                           topic=commands_by_domain):
            try:
                command = ReputationCommand.from_bytes(value)
            except ValueError as exc:
                log.warning("reputation.command_invalid", error=str(exc)[:300])
                continue
            now = ctx.clock()
            state, transitions = reputation_counts.apply_command(table[command.sending_domain.encode()], command, now)
            log.info("reputation.command_applied", action=command.action, sending_domain=command.sending_domain,
                     provider=command.provider, command_id=command.command_id)
            await publish(command.sending_domain, state, transitions, {command.provider}, now, force={command.provider})

    @ctx.app.timer(interval=1.0, name="reputation-clock")
    async def tick() -> None:
        """Wall-clock work: cool-downs and warm-up days, and snapshots held back by the rate limit."""
        now = ctx.clock()
        for key, value in list(table.items()):
            domain = key.decode()
            state, transitions = reputation_counts.judge(value, thresholds, now)
            before = value.get("providers", {})
            changed = {p for p, entry in state.get("providers", {}).items() if entry != before.get(p)}
            pending = {p for d, p in list(dirty) if d == domain} | changed
            if transitions or changed:
                await publish(domain, state, transitions, pending, now, force=pending)
            elif pending:
                records = snapshots(domain, pending, state, now, pending)
                if records:
                    await ctx.emit_durably(records)

    def load_controls() -> None:
        """Read the whole topic, then follow it: senders obey every identity's controls from the start."""
        follower = ReputationFollower(ctx.settings, controls)
        follower.catch_up()
        ready.set()
        log.info("reputation.controls_loaded", controls=len(controls))
        follower.start()
        follower_holder["follower"] = follower
        ctx.resources["reputation_follower"] = follower

    try:  # before the agents start, so a restarted worker sends nothing it should hold
        load_controls()
    except Exception as exc:  # noqa: BLE001 - the task below retries; the gate holds sends meanwhile
        log.warning("reputation.controls_unavailable", error=str(exc)[:300])

    @ctx.app.task
    async def follow_controls() -> None:
        while not ready.is_set():
            try:
                await asyncio.to_thread(load_controls)
            except Exception as exc:  # noqa: BLE001
                log.warning("reputation.controls_unavailable", error=str(exc)[:300])
                await asyncio.sleep(2.0)

    @ctx.app.page("/metrics/reputation/")
    class ReputationMetrics(View):
        async def get(self, request: Request) -> Response:
            follower = follower_holder.get("follower")
            return self.text(metrics.render(dict(follower.snapshots) if follower else {}),
                             content_type="text/plain; version=0.0.4")

    def stop_follower() -> None:
        if "follower" in follower_holder:
            follower_holder.pop("follower").stop()

    ctx.resources["stop_reputation_follower"] = stop_follower

