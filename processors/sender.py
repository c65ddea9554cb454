"""Sender stage: send intents -> ledger -> render -> SMTP -> delivery events.

Intents are taken in small batches: one producer flush makes every `sending` mark of the batch
durable before any SMTP exchange starts, and the exchanges then run concurrently over the pool.
Deferred intents wait in a durable table and are put back on the intents topic when due.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr

import structlog

from connectors.smtp import SmtpPool
from domain import send_ledger
from domain.events import DeliveryEvent, SendIntent
from domain.messages import HeaderInjectionError, build_message, message_id_for
from domain.send_ledger import RetryPolicy
from domain.smtp_replies import Ambiguous
from domain.templates import TemplateRenderError
from infra.logging import hashed
from infra.topics import Topic
from processors.app import WorkerContext

log = structlog.get_logger(__name__)

BATCH_SIZE = 256
BATCH_WITHIN_SECONDS = 0.05


@dataclass
class Prepared:
    intent: SendIntent
    message: bytes
    message_id: str
    attempt: int


def register(ctx: WorkerContext) -> None:
    ledger = ctx.table("send-ledger")
    retries = ctx.table("send-retries")
    ctx.resources["send_ledger"] = ledger
    policy = RetryPolicy(
        base=timedelta(seconds=ctx.settings.retry_base_seconds),
        max_age=timedelta(seconds=ctx.settings.retry_max_age_seconds),
    )
    envelope_from = parseaddr(ctx.settings.mail_from)[1]
    sending_domain = envelope_from.rsplit("@", 1)[-1].lower()
    pool_holder: dict[str, SmtpPool] = {}

    def pool() -> SmtpPool:
        if "pool" not in pool_holder:
            pool_holder["pool"] = SmtpPool(ctx.settings.smtp_url, size=ctx.settings.smtp_connections)
        return pool_holder["pool"]

    async def record(intent: SendIntent, entry: dict) -> None:
        key = intent.subscriber_id.encode()
        ledger[key] = send_ledger.remember(ledger[key], intent.intent_id, entry)

    def prepare(intent: SendIntent, attempt: int) -> Prepared | str:
        template = ctx.definitions.current.templates.get(intent.template_id)
        if template is None:
            return f"template '{intent.template_id}' is not live"
        try:
            rendered = template.render(intent.variables)
            message_id = message_id_for(intent.intent_id, sending_domain)
            message = build_message(
                rendered,
                intent_id=intent.intent_id,
                mail_from=ctx.settings.mail_from,
                to=intent.to,
                sending_domain=sending_domain,
                date=ctx.clock(),
                list_id=f"{intent.journey_id}.{sending_domain}",
                feedback_id=f"{intent.step_id}:{intent.journey_id}:{intent.template_id}:tidings",
            )
        except (TemplateRenderError, HeaderInjectionError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return Prepared(intent, message, message_id, attempt)

    async def conclude(settled: list[tuple[SendIntent, dict, DeliveryEvent]]) -> None:
        """Delivery events first (durably), ledger entries after: see WorkerContext.emit_durably."""
        if not settled:
            return
        await ctx.emit_durably([(Topic.DELIVERY, intent.subscriber_id, event) for intent, _, event in settled])
        for intent, entry, _ in settled:
            await record(intent, entry)

    def skipped(intent: SendIntent, attempt: int, reason: str) -> tuple[SendIntent, dict, DeliveryEvent]:
        now = ctx.clock()
        entry = {"state": "skipped", "attempt": attempt, "reason": reason[:200], "updated_at": now.isoformat()}
        event = send_ledger.delivery_event(intent, "skipped", attempt, now, sending_domain=sending_domain, detail=reason)
        return intent, entry, event

    async def deliver(batch: list[SendIntent]) -> None:
        now = ctx.clock()
        ready: list[Prepared] = []
        concluded: list[tuple[SendIntent, dict, DeliveryEvent]] = []
        in_batch: set[str] = set()
        for intent in batch:
            if intent.intent_id in in_batch:  # a replayed duplicate of an intent already in this batch
                continue
            in_batch.add(intent.intent_id)
            entry = ledger[intent.subscriber_id.encode()].get(intent.intent_id)
            admission = send_ledger.admit(entry, now)
            bound = log.bind(intent_id=intent.intent_id, subscriber=hashed(intent.subscriber_id))
            if admission.action in ("duplicate", "not_due"):
                bound.info("send.duplicate_ignored", state=(entry or {}).get("state"))
                continue
            if admission.action == "ambiguous":
                bound.warning("send.ambiguous_after_crash")
                settled = send_ledger.settle(
                    intent, Ambiguous("in flight when a worker stopped; not resent"), entry or {}, now, policy,
                    sending_domain=sending_domain, message_id=message_id_for(intent.intent_id, sending_domain),
                )
                concluded.append((intent, settled.entry, settled.delivery))
                continue
            prepared = prepare(intent, admission.attempt)
            if isinstance(prepared, str):
                bound.warning("send.skipped", reason=prepared)
                concluded.append(skipped(intent, admission.attempt, prepared))
                continue
            await record(intent, send_ledger.sending_entry(entry, admission.attempt, now))
            ready.append(prepared)
        if ready:
            # The `sending` marks must be on the broker before any byte goes to the relay.
            await ctx.app.producer.flush()
            outcomes = await asyncio.gather(*(pool().send(envelope_from, p.intent.to, p.message) for p in ready))
            settled_at = ctx.clock()
            for prepared, outcome in zip(ready, outcomes):
                intent = prepared.intent
                entry = ledger[intent.subscriber_id.encode()][intent.intent_id]
                settled = send_ledger.settle(
                    intent, outcome, entry, settled_at, policy, sending_domain=sending_domain,
                    message_id=prepared.message_id,
                )
                if settled.retry_at is not None:
                    await schedule_retry(intent, settled.retry_at)
                log.info(
                    "send.settled",
                    intent_id=intent.intent_id,
                    kind=settled.delivery.kind,
                    code=settled.delivery.smtp_code,
                    attempt=prepared.attempt,
                    recipient_domain=settled.delivery.recipient_domain,
                )
                concluded.append((intent, settled.entry, settled.delivery))
        await conclude(concluded)

    async def schedule_retry(intent: SendIntent, due: datetime) -> None:
        key = intent.subscriber_id.encode()
        pending = dict(retries[key])
        pending[intent.intent_id] = {"due": due.isoformat(), "intent": intent.model_dump(mode="json")}
        retries[key] = pending

    @ctx.app.agent(ctx.topic(Topic.SEND_INTENTS), name="sender")
    async def sender_agent(stream):  # type: ignore[no-untyped-def]
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_SECONDS):
            batch: list[SendIntent] = []
            for event in events:
                try:
                    batch.append(SendIntent.from_bytes(event.value))
                except ValueError as exc:
                    await ctx.dead_letter("sender", event, exc)
            await deliver(batch)

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
