"""Feedback routes: ESP webhooks, the open pixel and the click redirect.

Each report becomes a `DeliveryEvent` on the delivery topic, written before the answer (a 2xx
means Kafka has it). Ids are deterministic (the ESP's event id, SNS MessageId, the token), so a
retried webhook or a reloaded pixel counts once. The click redirect goes only to the URL bound in
its signed token; a bad token gets a plain 404 page, never a redirect.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime, timezone
from urllib.parse import urlsplit

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from connectors.api.body import read_body
from connectors.api.dedupe import RecentIds
from connectors.feedback.keys import tracking_signer
from connectors.feedback.report import Feedback, FeedbackError, to_delivery
from connectors.feedback.ses import SnsError, SnsVerifier, check_cert_url, parse_notification
from connectors.feedback.webhook import WebhookRefused, WebhookVerifier, parse_events
from connectors.kafka_producer import KafkaProducer, ProduceFailed
from domain.events import DeliveryEvent, stable_id
from domain.tracking import Signer, TokenError
from infra.logging import hashed
from infra.settings import Settings
from infra.topics import Topic

log = structlog.get_logger(__name__)

MAX_WEBHOOK_BYTES = 512 * 1024
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def include(app: FastAPI, settings: Settings, producer: KafkaProducer) -> None:
    signer_holder: dict[str, Signer] = {}
    recent = RecentIds(100_000)
    app.state.feedback_sns = SnsVerifier()
    app.state.feedback_webhook = WebhookVerifier(settings.webhook_secret, settings.webhook_tolerance_seconds)
    app.state.feedback_confirm = _confirm_subscription

    def signer() -> Signer:
        if "signer" not in signer_holder:
            signer_holder["signer"] = tracking_signer(settings)
        return signer_holder["signer"]

    async def publish(events: list[DeliveryEvent]) -> int:
        """Write events not written lately; the number written. Kafka failure is a 503."""
        fresh = [e for e in events if e.delivery_id not in recent]
        if fresh:
            topic = Topic.DELIVERY.name(settings)
            await producer.produce_all([(topic, e.subscriber_id.encode(), e.to_bytes()) for e in fresh])
            recent.add_all(e.delivery_id for e in fresh)
        return len(fresh)

    def deliveries(reports: list[tuple[Feedback, str, str]], now: datetime) -> tuple[list[DeliveryEvent], int]:
        events, unmatched = [], 0
        for report, intent_id, subscriber_id in reports:
            try:
                events.append(to_delivery(report, signer(), now, intent_id=intent_id, subscriber_id=subscriber_id))
            except FeedbackError as exc:
                unmatched += 1
                log.info("feedback.unmatched", source=report.source, reason=str(exc)[:200])
        return events, unmatched

    @app.post("/v1/webhooks/generic")
    async def generic_webhook(request: Request) -> JSONResponse:
        body = await read_body(request, MAX_WEBHOOK_BYTES)
        try:
            request.app.state.feedback_webhook.verify({k.lower(): v for k, v in request.headers.items()}, body)
        except WebhookRefused as exc:
            log.warning("webhook.refused", source="generic", reason=str(exc))
            return JSONResponse({"error": str(exc)}, status_code=401)
        try:
            reports = parse_events(body)
        except FeedbackError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        events, unmatched = deliveries(reports, datetime.now(timezone.utc))
        written = await _publish_or_503(publish, events)
        if isinstance(written, JSONResponse):
            return written
        return JSONResponse({"accepted": len(events), "written": written, "unmatched": unmatched}, status_code=202)

    @app.post("/v1/webhooks/ses")
    async def ses_webhook(request: Request) -> JSONResponse:
        body = await read_body(request, MAX_WEBHOOK_BYTES)
        try:
            message = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "body: not JSON"}, status_code=422)
        now = datetime.now(timezone.utc)
        try:
            await asyncio.to_thread(request.app.state.feedback_sns.verify, message, now)
        except SnsError as exc:
            log.warning("webhook.refused", source="ses", reason=str(exc))
            return JSONResponse({"error": str(exc)}, status_code=401)
        if message.get("Type") == "SubscriptionConfirmation":
            url = str(message.get("SubscribeURL", ""))
            try:
                check_cert_url(url, pem=False)  # the same host rule as the certificate: never fetch elsewhere
                await asyncio.to_thread(request.app.state.feedback_confirm, url)
            except (SnsError, OSError, ValueError) as exc:
                return JSONResponse({"error": f"subscription not confirmed: {exc}"}, status_code=400)
            log.info("webhook.ses_subscribed", topic=message.get("TopicArn"))
            return JSONResponse({"confirmed": True})
        if message.get("Type") != "Notification":
            return JSONResponse({"ignored": message.get("Type")})
        try:
            reports = [(r, "", "") for r in parse_notification(message)]
        except FeedbackError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        events, unmatched = deliveries(reports, now)
        written = await _publish_or_503(publish, events)
        if isinstance(written, JSONResponse):
            return written
        return JSONResponse({"accepted": len(events), "written": written, "unmatched": unmatched})

    @app.get("/t/o/{token}.gif")
    async def open_pixel(token: str) -> Response:
        """Always the pixel: a forged token learns nothing, and records nothing."""
        now = datetime.now(timezone.utc)
        try:
            claims = signer().verify(token, "open", now)
            event = _tracking_event("opened", claims, now, stable_id("opened", str(claims.get("i"))))
            await publish([event])
            log.info("tracking.opened", intent_id=event.intent_id, subscriber=hashed(event.subscriber_id))
        except TokenError as exc:
            log.info("tracking.token_refused", kind="open", reason=str(exc))
        except ProduceFailed as exc:
            log.warning("tracking.not_recorded", kind="open", error=str(exc)[:200])
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)

    @app.get("/t/c/{token}")
    async def click(token: str) -> Response:
        now = datetime.now(timezone.utc)
        try:
            claims = signer().verify(token, "click", now)
        except TokenError as exc:
            log.info("tracking.token_refused", kind="click", reason=str(exc))
            return HTMLResponse("<!doctype html><title>Link not valid</title><p>This link is not valid or has expired.</p>",
                                status_code=404, headers=NO_STORE)
        target = claims.get("u")
        if not isinstance(target, str) or urlsplit(target).scheme not in ("http", "https") or not urlsplit(target).netloc:
            return HTMLResponse("<!doctype html><p>This link is not valid.</p>", status_code=404, headers=NO_STORE)
        event = _tracking_event("clicked", claims, now, stable_id("clicked", str(claims.get("i")), str(claims.get("l"))),
                                detail=f"link {claims.get('l')}")
        try:
            await publish([event])
        except ProduceFailed as exc:  # the reader still gets where the link pointed
            log.warning("tracking.not_recorded", kind="click", error=str(exc)[:200])
        return RedirectResponse(target, status_code=302, headers=NO_STORE)


def _tracking_event(kind: str, claims: dict, now: datetime, delivery_id: str, detail: str = "") -> DeliveryEvent:
    return DeliveryEvent(delivery_id=delivery_id, intent_id=str(claims.get("i", ""))[:128],
                         subscriber_id=str(claims.get("s", ""))[:128], kind=kind, occurred_at=now,  # type: ignore[arg-type]
                         detail=detail)


async def _publish_or_503(publish, events: list[DeliveryEvent]) -> int | JSONResponse:  # type: ignore[no-untyped-def]
    try:
        return await publish(events)
    except ProduceFailed as exc:
        log.warning("feedback.not_written", error=str(exc)[:200])
        return JSONResponse({"error": "could not write to Kafka; retry later"}, status_code=503)


def _confirm_subscription(url: str) -> None:
    import httpx

    httpx.get(url, timeout=10, follow_redirects=False).raise_for_status()
