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

from connectors.crypto import PersonalDataErased, open_intent
from connectors.dkim import DkimSigner, DkimSigningProcess, signer_from_settings
from connectors.feedback.report import ref_header
from connectors.smtp import SmtpPool
from domain import policy, send_ledger, tokens
from domain.events import DeliveryEvent, SendIntent, stable_id
from domain.messages import MessageError, build_message, message_id_for
from domain.send_ledger import RetryPolicy
from domain.smtp_replies import Ambiguous, SendOutcome
from domain.templates import CompiledTemplate, TemplateRenderError
from domain.tracking import Signer, expiry, track_html
from infra.logging import hashed
from infra.settings import Settings
from infra.token_keys import TokenKeys, load_token_keys
from infra.topics import Topic
from processors.app import WorkerContext

log = structlog.get_logger(__name__)

BATCH_SIZE = 256
BATCH_WITHIN_SECONDS = 0.05
# Intents marked `sending` together and then sent: a crash makes the unsettled ones of a chunk
# ambiguous, so the chunk bounds that loss; each chunk costs one flush and one durable emit.
SEND_CHUNK = 64
# Messages whose RSA signatures go to the signing process in one round trip: small enough that the
# child starts signing while the rest of the chunk is still being composed.
DKIM_BATCH = 8
UNSUBSCRIBE_TTL = timedelta(days=60)  # as the consent area's own links

Settled = tuple[SendIntent, dict | None, DeliveryEvent]
Emit = Callable[[list[DeliveryEvent]], Awaitable[None]]


@dataclass
class Prepared:
    intent: SendIntent
    message: bytes
    message_id: str
    attempt: int
    signing: asyncio.Future | None = None  # the DKIM-signed message, being made by the signing process
    recipient: str = ""  # the opened address for the SMTP envelope; `intent` stays sealed (retries store it)


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
    """Render + tracking + unsubscribe headers + MIME + DKIM for one intent.

    The one-click unsubscribe URL is the consent area's signed link (`/u/{token}`, RFC 8058 POST);
    click and open tokens are signed with the same rotating keys.
    """

    settings: Settings
    keys: TokenKeys
    dkim: DkimSigner | None
    sending_domain: str
    signer: Signer = field(init=False)

    def __post_init__(self) -> None:
        self.signer = Signer(dict(self.keys.keys), self.keys.current_id)
        self.base = self.settings.public_url.rstrip("/")

    def compose(
        self, intent: SendIntent, template: CompiledTemplate, attempt: int, now: datetime, *, sign: bool = True
    ) -> Prepared:
        opened = open_intent(self.settings, intent)  # sealed personal data, opened for this message only
        rendered = template.render(opened.variables)
        unsubscribe_url = None
        if not intent.transactional:
            list_id = intent.variables.get("list_id")
            token = tokens.sign(
                "unsubscribe", intent.subscriber_id, key_id=self.keys.current_id, key=self.keys.current, now=now,
                ttl=UNSUBSCRIBE_TTL, list_id=list_id if isinstance(list_id, str) else "",
            )
            unsubscribe_url = f"{self.base}/u/{token}"
        if self.settings.tracking_enabled:
            tracked = track_html(
                rendered.html, signer=self.signer, public_url=self.base, intent_id=intent.intent_id,
                subscriber_id=intent.subscriber_id, expires_at=expiry(now, self.settings.tracking_token_days),
                skip_prefixes=(f"{self.base}/u/", f"{self.base}/p/"),
            )
            rendered = type(rendered)(rendered.subject, rendered.preheader, tracked.html, rendered.text)
        message = build_message(
            rendered,
            intent_id=intent.intent_id,
            mail_from=self.settings.mail_from,
            to=opened.to,
            sending_domain=self.sending_domain,
            date=now,
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=(self.settings.unsubscribe_mailto or None) if unsubscribe_url else None,
            list_id=f"{intent.journey_id}.{self.sending_domain}",
            feedback_id=f"{intent.step_id}:{intent.journey_id}:{intent.template_id}:tidings",
        )
        message = ref_header(self.signer, intent.intent_id, intent.subscriber_id, now) + message
        if sign and self.dkim is not None:
            message = self.dkim.sign(message, now)
        return Prepared(intent, message, message_id_for(intent.intent_id, self.sending_domain), attempt,
                        recipient=opened.to)


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
            self.settings, load_token_keys(self.settings), signer_from_settings(self.settings, self.sending_domain),
            self.sending_domain,
        )
        self.consent_check = _consent_check()
        # RSA signing holds the GIL in `cryptography`, so it runs in a child process: the child signs
        # on the second core while the loop composes and talks SMTP.
        self.signing = DkimSigningProcess(self.composer.dkim) if self.composer.dkim is not None else None

    async def deliver(self, batch: list[SendIntent]) -> None:
        now = self.clock()
        ready: list[Prepared] = []
        to_sign: list[Prepared] = []
        concluded: list[Settled] = []
        in_batch: set[str] = set()
        for intent in batch:
            if intent.intent_id in in_batch:  # a replayed duplicate of an intent already in this batch
                continue
            in_batch.add(intent.intent_id)
            key = intent.subscriber_id.encode()
            entry = self.ledger[key].get(intent.intent_id)
            admission = send_ledger.admit(entry, now)
            bound = _LazyBound(intent)
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
                prepared = self.composer.compose(intent, template, admission.attempt, now, sign=False)
            except PersonalDataErased:
                bound.info("send.skipped", reason="erased")
                concluded.append(self._skipped(intent, admission.attempt, "erased"))
                continue
            except (TemplateRenderError, MessageError, ValueError) as exc:
                bound.warning("send.skipped", reason=str(exc)[:200])
                concluded.append(self._skipped(intent, admission.attempt, f"{type(exc).__name__}: {exc}"))
                continue
            self.caps[key] = policy.record_send(self.caps[key], intent, now)
            self.ledger[key] = send_ledger.remember(
                self.ledger[key], intent.intent_id, send_ledger.sending_entry(entry, admission.attempt, now)
            )
            ready.append(prepared)
            if self.signing is not None:
                to_sign.append(prepared)
                if len(to_sign) == DKIM_BATCH:
                    self._sign(to_sign, now)
                    to_sign = []
        if to_sign:
            self._sign(to_sign, now)
        if ready:
            # The `sending` marks must be on the broker before any byte goes to the relay.
            await self.flush()
            outcomes = await asyncio.gather(*(self._send_one(p) for p in ready))
            concluded.extend(self._settle(ready, outcomes))
        await self._conclude(concluded)

    def _sign(self, prepared: list[Prepared], now: datetime) -> None:
        assert self.signing is not None
        for item, signing in zip(prepared, self.signing.submit([p.message for p in prepared], now)):
            item.signing = signing

    def close(self) -> None:
        """Stops the signing process (if any)."""
        if self.signing is not None:
            self.signing.close()

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
        if isinstance(decision, policy.Send) and "reputation_gate" in self.resources:  # processors/reputation.py
            decision = self.resources["reputation_gate"](intent, now, self.sending_domain) or decision
        if isinstance(decision, policy.Send):
            policy.take_rate_slot(self.rate_state, intent, now, reputation, sending_domain=self.sending_domain,
                                  config=self.config)
        return decision

    # -- outcomes ---------------------------------------------------------------------------

    async def _send_one(self, prepared: Prepared) -> SendOutcome | str:
        message = prepared.message
        if prepared.signing is not None:
            try:
                message = await prepared.signing
            except Exception as exc:  # noqa: BLE001 - a message we cannot sign is not sent
                return f"DKIM signing failed: {type(exc).__name__}: {exc}"
        return await self.send(self.envelope_from, prepared.recipient or prepared.intent.to, message)

    def _settle(self, ready: list[Prepared], outcomes: list[SendOutcome | str]) -> list[Settled]:
        settled_at = self.clock()
        out: list[Settled] = []
        for prepared, outcome in zip(ready, outcomes):
            intent = prepared.intent
            if isinstance(outcome, str):
                out.append(self._skipped(intent, prepared.attempt, outcome))
                continue
            entry = self.ledger[intent.subscriber_id.encode()][intent.intent_id]
            settled = send_ledger.settle(
                intent, outcome, entry, settled_at, self.retry_policy, sending_domain=self.sending_domain,
                message_id=prepared.message_id,
            )
            if settled.retry_at is not None:
                self._schedule_retry(intent, settled.retry_at)
            log.debug(
                "send.settled", intent_id=intent.intent_id, kind=settled.delivery.kind,
                code=settled.delivery.smtp_code, attempt=prepared.attempt,
                recipient_domain=settled.delivery.recipient_domain,
            )
            out.append((intent, settled.entry, settled.delivery))
        kinds: dict[str, int] = {}
        for _, _, event in out:
            kinds[event.kind] = kinds.get(event.kind, 0) + 1
        log.info("send.chunk_settled", messages=len(out), **kinds)
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


class _LazyBound:
    """Binds the intent's log context only when something is logged (the happy path logs nothing per message)."""

    def __init__(self, intent: SendIntent) -> None:
        self.intent = intent

    def __getattr__(self, level: str):  # type: ignore[no-untyped-def]
        bound = log.bind(intent_id=self.intent.intent_id, subscriber=hashed(self.intent.subscriber_id))
        return getattr(bound, level)


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
            for start in range(0, len(batch), SEND_CHUNK):
                await core.deliver(batch[start : start + SEND_CHUNK])

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
        core.close()
        if "pool" in pool_holder:
            await pool_holder.pop("pool").close()

    ctx.resources["close_smtp_pool"] = close_pool
