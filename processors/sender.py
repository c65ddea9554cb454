"""Sender stage: send intents -> ledger -> policy gate -> render -> SMTP -> delivery events.

Intents are taken in small batches: one producer flush makes every `sending` mark of the batch
durable before any SMTP exchange starts, and the exchanges then run concurrently over the pool.
Deferred intents (4xx, or held back by the policy gate) wait in a durable table and are put back on
the intents topic when due. A second agent folds delivery feedback (hard bounce, complaint,
unsubscribe) into the per-subscriber `send-caps` table the gate reads.

`SenderCore` holds the per-batch logic with its tables, emitter and SMTP pool passed in, so the
benchmark drives the very same path without Kafka.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

import structlog

from connectors.dkim import DkimSigner, signer_from_settings
from connectors.feedback.keys import tracking_signer
from connectors.smtp import SmtpPool
from domain import policy, send_ledger
from domain.events import DeliveryEvent, SendIntent, stable_id
from domain.messages import MessageError, build_message, message_id_for
from domain.send_ledger import RetryPolicy
from domain.smtp_replies import Ambiguous, SendOutcome
from domain.templates import CompiledTemplate, TemplateRenderError
from domain.tracking import Signer, expiry, track_html, unsubscribe_token
from infra.logging import hashed
from infra.settings import Settings
from infra.topics import Topic
from processors.app import WorkerContext

log = structlog.get_logger(__name__)

BATCH_SIZE = 256
BATCH_WITHIN_SECONDS = 0.05

Settled = tuple[SendIntent, dict | None, DeliveryEvent]
Emit = Callable[[list[DeliveryEvent]], Awaitable[None]]


@dataclass
class Prepared:
    intent: SendIntent
    message: bytes
    message_id: str
    attempt: int


def policy_config(settings: Settings) -> policy.PolicyConfig:
    """The gate's configuration; a bad setting stops the worker at start-up with a clear error."""
    return policy.PolicyConfig(
        caps=policy.parse_caps(settings.frequency_cap),
        quiet_hours=policy.parse_quiet_hours(settings.quiet_hours, settings.quiet_hours_mode),
        default_timezone=policy.check_timezone(settings.default_timezone),
    )


def _consent_check() -> Callable[[dict, str | None], tuple[bool, str]] | None:
    """The consent helper's verdict function, once `domain.consent` exists."""
    try:
        return importlib.import_module("domain.consent").may_send_marketing
    except (ImportError, AttributeError):
        return None


@dataclass
class Composer:
    """Render + tracking + unsubscribe headers + MIME + DKIM for one intent."""

    settings: Settings
    signer: Signer
    dkim: DkimSigner | None
    sending_domain: str

    def compose(self, intent: SendIntent, template: CompiledTemplate, attempt: int, now: datetime) -> Prepared:
        rendered = template.render(intent.variables)
        base = self.settings.public_url.rstrip("/")
        expires = expiry(now, self.settings.tracking_token_days)
        list_id = f"{intent.journey_id}.{self.sending_domain}"
        unsubscribe_url = None
        if not intent.transactional:
            list_name = intent.variables.get("list_id") if isinstance(intent.variables.get("list_id"), str) else ""
            token = unsubscribe_token(
                self.signer, subscriber_id=intent.subscriber_id, intent_id=intent.intent_id,
                list_id=list_name or intent.journey_id, expires_at=expires,
            )
            unsubscribe_url = f"{base}/t/u/{token}"
        if self.settings.tracking_enabled:
            tracked = track_html(
                rendered.html, signer=self.signer, public_url=base, intent_id=intent.intent_id,
                subscriber_id=intent.subscriber_id, expires_at=expires, skip_prefixes=(f"{base}/t/u/",),
            )
            rendered = type(rendered)(rendered.subject, rendered.preheader, tracked.html, rendered.text)
        message = build_message(
            rendered,
            intent_id=intent.intent_id,
            mail_from=self.settings.mail_from,
            to=intent.to,
            sending_domain=self.sending_domain,
            date=now,
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=(self.settings.unsubscribe_mailto or None) if unsubscribe_url else None,
            list_id=list_id,
            feedback_id=f"{intent.step_id}:{intent.journey_id}:{intent.template_id}:tidings",
        )
        if self.dkim is not None:
            message = self.dkim.sign(message, now)
        return Prepared(intent, message, message_id_for(intent.intent_id, self.sending_domain), attempt)


@dataclass
class SenderCore:
    """One batch of intents from ledger admission to settled delivery events."""

    settings: Settings
    ledger: MutableMapping[bytes, dict]
    retries: MutableMapping[bytes, dict]
    caps: MutableMapping[bytes, dict]
    templates: Callable[[], dict[str, CompiledTemplate]]
    emit_durably: Emit
    flush: Callable[[], Awaitable[None]]
    send: Callable[[str, str, bytes], Awaitable[SendOutcome]]
    clock: Callable[[], datetime]
    resources: dict[str, Any] = field(default_factory=dict)
    composer: Composer = field(init=False)
    rate_state: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.envelope_from = parseaddr(self.settings.mail_from)[1]
        self.sending_domain = self.envelope_from.rsplit("@", 1)[-1].lower()
        self.retry_policy = RetryPolicy(
            base=timedelta(seconds=self.settings.retry_base_seconds),
            max_age=timedelta(seconds=self.settings.retry_max_age_seconds),
        )
        self.config = policy_config(self.settings)
        self.composer = Composer(
            self.settings, tracking_signer(self.settings), signer_from_settings(self.settings, self.sending_domain),
            self.sending_domain,
        )
        self.consent_check = _consent_check()

    async def deliver(self, batch: list[SendIntent]) -> None:
        now = self.clock()
        ready: list[Prepared] = []
        concluded: list[Settled] = []
        in_batch: set[str] = set()
        for intent in batch:
            if intent.intent_id in in_batch:  # a replayed duplicate of an intent already in this batch
                continue
            in_batch.add(intent.intent_id)
            key = intent.subscriber_id.encode()
            entry = self.ledger[key].get(intent.intent_id)
            admission = send_ledger.admit(entry, now)
            bound = log.bind(intent_id=intent.intent_id, subscriber=hashed(intent.subscriber_id))
            if admission.action in ("duplicate", "not_due"):
                bound.info("send.duplicate_ignored", state=(entry or {}).get("state"))
                continue
            if admission.action == "ambiguous":
                bound.warning("send.ambiguous_after_crash")
                settled = send_ledger.settle(
                    intent, Ambiguous("in flight when a worker stopped; not resent"), entry or {}, now,
                    self.retry_policy, sending_domain=self.sending_domain,
                    message_id=message_id_for(intent.intent_id, self.sending_domain),
                )
                concluded.append((intent, settled.entry, settled.delivery))
                continue
            decision = self._gate(intent, now)
            if isinstance(decision, policy.Skip):
                bound.info("send.skipped", reason=decision.reason)
                concluded.append(self._skipped(intent, admission.attempt, decision.reason))
                continue
            if isinstance(decision, policy.Defer):
                bound.info("send.held", reason=decision.reason, until=decision.until.isoformat())
                self._schedule_retry(intent, decision.until)
                concluded.append(self._held(intent, admission.attempt, decision))
                continue
            template = self.templates().get(intent.template_id)
            if template is None:
                concluded.append(self._skipped(intent, admission.attempt, f"template '{intent.template_id}' is not live"))
                continue
            try:
                prepared = self.composer.compose(intent, template, admission.attempt, now)
            except (TemplateRenderError, MessageError, ValueError) as exc:
                bound.warning("send.skipped", reason=str(exc)[:200])
                concluded.append(self._skipped(intent, admission.attempt, f"{type(exc).__name__}: {exc}"))
                continue
            self.caps[key] = policy.record_send(self.caps[key], intent, now)
            self.ledger[key] = send_ledger.remember(
                self.ledger[key], intent.intent_id, send_ledger.sending_entry(entry, admission.attempt, now)
            )
            ready.append(prepared)
        if ready:
            # The `sending` marks must be on the broker before any byte goes to the relay.
            await self.flush()
            outcomes = await asyncio.gather(*(self.send(self.envelope_from, p.intent.to, p.message) for p in ready))
            concluded.extend(self._settle(ready, outcomes))
        await self._conclude(concluded)

    # -- gate -------------------------------------------------------------------------------

    def _gate(self, intent: SendIntent, now: datetime) -> policy.Decision:
        consent_states = self.resources.get("consent_states")
        consent_state = consent_states[intent.subscriber_id.encode()] if consent_states is not None else None
        reputation = self.resources.get("reputation_states") or {}
        decision = policy.decide(
            intent, now, self.config,
            policy.GateInput(self.caps[intent.subscriber_id.encode()], consent_state, reputation, self.rate_state),
            sending_domain=self.sending_domain,
            may_send_marketing=self.consent_check if consent_states is not None else None,
        )
        if isinstance(decision, policy.Send):
            policy.take_rate_slot(self.rate_state, intent, now, reputation, sending_domain=self.sending_domain,
                                  config=self.config)
        return decision

    # -- outcomes ---------------------------------------------------------------------------

    def _settle(self, ready: list[Prepared], outcomes: list[SendOutcome]) -> list[Settled]:
        settled_at = self.clock()
        out: list[Settled] = []
        for prepared, outcome in zip(ready, outcomes):
            intent = prepared.intent
            entry = self.ledger[intent.subscriber_id.encode()][intent.intent_id]
            settled = send_ledger.settle(
                intent, outcome, entry, settled_at, self.retry_policy, sending_domain=self.sending_domain,
                message_id=prepared.message_id,
            )
            if settled.retry_at is not None:
                self._schedule_retry(intent, settled.retry_at)
            log.info(
                "send.settled", intent_id=intent.intent_id, kind=settled.delivery.kind,
                code=settled.delivery.smtp_code, attempt=prepared.attempt,
                recipient_domain=settled.delivery.recipient_domain,
            )
            out.append((intent, settled.entry, settled.delivery))
        return out

    async def _conclude(self, settled: list[Settled]) -> None:
        """Delivery events first (durably), ledger entries after: see WorkerContext.emit_durably."""
        if not settled:
            return
        await self.emit_durably([event for _, _, event in settled])
        for intent, entry, _ in settled:
            if entry is not None:
                key = intent.subscriber_id.encode()
                self.ledger[key] = send_ledger.remember(self.ledger[key], intent.intent_id, entry)

    def _skipped(self, intent: SendIntent, attempt: int, reason: str) -> Settled:
        now = self.clock()
        entry = {"state": "skipped", "attempt": attempt, "reason": reason[:200], "updated_at": now.isoformat()}
        event = send_ledger.delivery_event(
            intent, "skipped", attempt, now, sending_domain=self.sending_domain, detail=reason
        )
        return intent, entry, event

    def _held(self, intent: SendIntent, attempt: int, decision: policy.Defer) -> Settled:
        """A policy deferral: a `deferred` event without an SMTP code, no ledger entry (nothing was sent)."""
        event = send_ledger.delivery_event(
            intent, "deferred", attempt, self.clock(), sending_domain=self.sending_domain,
            detail=f"policy: {decision.reason}; until {decision.until.isoformat()}",
        )
        event = event.model_copy(update={"delivery_id": stable_id(intent.intent_id, "held", decision.until.isoformat())})
        return intent, None, event

    def _schedule_retry(self, intent: SendIntent, due: datetime) -> None:
        key = intent.subscriber_id.encode()
        pending = dict(self.retries[key])
        pending[intent.intent_id] = {"due": due.isoformat(), "intent": intent.model_dump(mode="json")}
        self.retries[key] = pending


def register(ctx: WorkerContext) -> None:
    ledger = ctx.table("send-ledger")
    retries = ctx.table("send-retries")
    caps = ctx.table("send-caps")
    ctx.resources["send_ledger"] = ledger
    ctx.resources["send_caps"] = caps
    pool_holder: dict[str, SmtpPool] = {}

    def pool() -> SmtpPool:
        if "pool" not in pool_holder:
            pool_holder["pool"] = SmtpPool(ctx.settings.smtp_url, size=ctx.settings.smtp_connections)
        return pool_holder["pool"]

    async def emit_durably(events: list[DeliveryEvent]) -> None:
        await ctx.emit_durably([(Topic.DELIVERY, event.subscriber_id, event) for event in events])

    async def flush() -> None:
        await ctx.app.producer.flush()

    async def send(mail_from: str, to: str, message: bytes) -> SendOutcome:
        return await pool().send(mail_from, to, message)

    core = SenderCore(
        settings=ctx.settings, ledger=ledger, retries=retries, caps=caps,
        templates=lambda: ctx.definitions.current.templates, emit_durably=emit_durably, flush=flush, send=send,
        clock=ctx.clock, resources=ctx.resources,
    )

    @ctx.app.agent(ctx.topic(Topic.SEND_INTENTS), name="sender")
    async def sender_agent(stream):  # type: ignore[no-untyped-def]
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_SECONDS):
            batch: list[SendIntent] = []
            for event in events:
                try:
                    batch.append(SendIntent.from_bytes(event.value))
                except ValueError as exc:
                    await ctx.dead_letter("sender", event, exc)
            await core.deliver(batch)

    @ctx.app.agent(ctx.topic(Topic.DELIVERY), name="sender-suppression")
    async def suppression_agent(stream):  # type: ignore[no-untyped-def]
        """Hard bounces, complaints and unsubscribes stop later sends (the delivery topic is subscriber-keyed)."""
        async for value in stream:
            try:
                delivery = DeliveryEvent.from_bytes(value)
            except ValueError:
                continue  # the reputation stage logs undecodable delivery records
            key = delivery.subscriber_id.encode()
            current = caps[key]
            updated = policy.apply_delivery(current, delivery)
            if updated is not current:
                log.info("send.suppressed", subscriber=hashed(delivery.subscriber_id), cause=delivery.kind)
                caps[key] = dict(updated)

    @ctx.app.timer(interval=1.0, name="sender-retries")
    async def release_due_retries() -> None:
        """Durable timers: due times live in a changelogged table; this only looks at them."""
        now = ctx.clock()
        for key, pending in list(retries.items()):
            due = {i: p for i, p in pending.items() if datetime.fromisoformat(p["due"]) <= now}
            if not due:
                continue
            for item in due.values():
                intent = SendIntent.model_validate(item["intent"])
                await ctx.emit(Topic.SEND_INTENTS, intent.subscriber_id, intent)
            retries[key] = {i: p for i, p in pending.items() if i not in due}

    async def close_pool() -> None:
        if "pool" in pool_holder:
            await pool_holder.pop("pool").close()

    ctx.resources["close_smtp_pool"] = close_pool
