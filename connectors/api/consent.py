"""Consent routes: subscribers, consent changes, signed links from emails, erasure.

API-key routes (`/v1/subscribers...`) write to the event store (SubscribersApplication). Link routes
(`/u/`, `/p/`, `/c/`) take no cookie and no key: the HMAC-signed token in the path is the only
credential (domain/tokens.py). A GET never changes anything; changes need a POST (RFC 8058: the
one-click POST answers 200 itself, no redirect). A bad token gets 4xx and changes nothing.

Every write nudges the relay thread, which runs in this process beside the API and puts the stored
events on `tidings.consent` (processors/relay.py).
"""

from __future__ import annotations

import asyncio
import html
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.api.auth import authenticate
from connectors.api.body import parse_json, read_body
from connectors.api.errors import ApiError, field_path
from connectors.kafka_producer import KafkaProducer
from domain import tokens
from domain.subscribers import SubscriberError, SubscribersApplication, SubscriberView
from infra.api_keys import ApiKeyStore
from infra.event_store import EventStore, open_event_store
from infra.logging import hashed
from infra.settings import Settings
from infra.token_keys import load_token_keys

log = structlog.get_logger(__name__)

MAX_BODY = 64 * 1024
LINK_TTL = {"unsubscribe": timedelta(days=60), "preferences": timedelta(days=60), "confirm": timedelta(days=7)}
LINK_PREFIX = {"unsubscribe": "u", "preferences": "p", "confirm": "c"}


class SubscriberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subscriber_id: str = Field(min_length=1, max_length=128)
    email: str = Field(min_length=3, max_length=320)
    external_id: str = Field("", max_length=128)
    timezone: str = Field("UTC", max_length=64)
    locale: str = Field("en", max_length=16)
    attributes: str = Field("", max_length=4096, description="Free text; stored encrypted.")
    lists: list[str] = Field(default_factory=list, max_length=50)
    double_opt_in: bool = False


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str = Field(pattern="^(subscribe|unsubscribe|resubscribe|suppress|unsuppress)$")
    list_id: str | None = Field(None, max_length=64)
    reason: str = Field("", max_length=200)
    actor: str = Field("api", max_length=64)


def link(settings: Settings, purpose: tokens.Purpose, subscriber_id: str, list_id: str = "",
         now: datetime | None = None) -> str:
    """A signed link for an email: `<public_url>/u/<token>` and friends."""
    keys = load_token_keys(settings)
    token = tokens.sign(purpose, subscriber_id, key_id=keys.current_id, key=keys.current,
                        now=now or datetime.now(timezone.utc), ttl=LINK_TTL[purpose], list_id=list_id)
    return f"{settings.public_url.rstrip('/')}/{LINK_PREFIX[purpose]}/{token}"


def include(app: FastAPI, settings: Settings, producer: KafkaProducer) -> None:
    keys = ApiKeyStore(settings)
    holder: dict[str, Any] = {}

    def store() -> EventStore:
        if "store" not in holder:
            holder["store"] = open_event_store(settings)
        return holder["store"]

    def subscribers() -> SubscribersApplication:
        return store().subscribers

    def nudge() -> None:
        if "relay" in holder:
            holder["relay"].nudge()

    original_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI):  # type: ignore[no-untyped-def]
        from processors.relay import Relay, RelayThread

        relay = RelayThread(Relay(settings, await asyncio.to_thread(store), producer))
        relay.start()
        holder["relay"] = relay
        try:
            async with original_lifespan(a) as state:
                yield state
        finally:
            await asyncio.to_thread(relay.stop)
            if "store" in holder:
                holder.pop("store").close()

    app.router.lifespan_context = lifespan

    def verify(token: str, purpose: tokens.Purpose) -> tokens.TokenClaims:
        try:
            return tokens.verify(token, purpose=purpose, keys=load_token_keys(settings).keys, now=datetime.now(timezone.utc))
        except tokens.TokenInvalid as exc:
            raise ApiError(400 if "malformed" in str(exc) else 403, f"link not valid: {exc}", reason="bad_token",
                           field="token") from None

    async def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = await asyncio.to_thread(fn, *args, **kwargs)
        except SubscriberError as exc:
            field, _, _ = str(exc).partition(":")
            status = 404 if "no subscriber" in str(exc) else 409 if "erased" in str(exc) else 422
            raise ApiError(status, str(exc), reason="consent_rejected", field=field) from None
        nudge()
        return result

    def view_json(view: SubscriberView) -> dict[str, Any]:
        return {
            "subscriber_id": view.subscriber_id,
            "email": view.email,
            "external_id": view.external_id,
            "timezone": view.timezone,
            "locale": view.locale,
            "globally_unsubscribed": view.globally_unsubscribed,
            "suppressed": view.suppressed_reason,
            "erased": view.erased,
            "lists": view.lists,
            "version": view.version,
            "links": {
                "unsubscribe": link(settings, "unsubscribe", view.subscriber_id),
                "preferences": link(settings, "preferences", view.subscriber_id),
                "confirm": {
                    list_id: link(settings, "confirm", view.subscriber_id, list_id)
                    for list_id, status in view.lists.items() if status == "pending"
                },
            },
        }

    async def body_of(request: Request, model: type[BaseModel]) -> Any:
        data = parse_json(await read_body(request, MAX_BODY))
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ApiError(422, f"{field_path(first['loc'])}: {first['msg']}", reason="invalid_subscriber",
                           field=field_path(first["loc"])) from None

    @app.post("/v1/subscribers")
    async def upsert_subscriber(request: Request) -> JSONResponse:
        actor = authenticate(request.headers.get("authorization"), keys)
        body: SubscriberIn = await body_of(request, SubscriberIn)
        subscriber = await run(
            subscribers().register_or_update, body.subscriber_id, body.email, external_id=body.external_id,
            timezone=body.timezone, locale=body.locale, attributes=body.attributes, lists=body.lists,
            double_opt_in=body.double_opt_in, actor=f"api:{actor}",
        )
        log.info("subscriber.saved", subscriber=hashed(body.subscriber_id), version=subscriber.version)
        view = await asyncio.to_thread(subscribers().view, body.subscriber_id)
        return JSONResponse(view_json(view), status_code=201 if subscriber.version == 1 else 200)

    @app.get("/v1/subscribers/{subscriber_id}")
    async def show_subscriber(subscriber_id: str, request: Request) -> JSONResponse:
        authenticate(request.headers.get("authorization"), keys)
        view = await asyncio.to_thread(subscribers().view, subscriber_id)
        if view is None:
            raise ApiError(404, f"subscriber_id: no subscriber {subscriber_id!r}", reason="not_found", field="subscriber_id")
        history = await asyncio.to_thread(subscribers().history, subscriber_id)
        return JSONResponse({**view_json(view), "history": [h.__dict__ for h in history]})

    @app.post("/v1/subscribers/{subscriber_id}/consent")
    async def change_consent(subscriber_id: str, request: Request) -> JSONResponse:
        actor = authenticate(request.headers.get("authorization"), keys)
        body: ConsentIn = await body_of(request, ConsentIn)
        kwargs: dict[str, Any] = {"actor": f"{body.actor}:{actor}"}
        if body.action in ("subscribe", "unsubscribe"):
            kwargs["list_id"] = body.list_id
            if body.action == "subscribe" and body.list_id is None:
                raise ApiError(422, "list_id: required to subscribe", reason="invalid_consent", field="list_id")
        if body.action in ("unsubscribe", "suppress"):
            kwargs["reason"] = body.reason or ("manual" if body.action == "suppress" else "api")
        subscriber = await run(subscribers().change, subscriber_id, body.action, **kwargs)
        log.info("consent.recorded", subscriber=hashed(subscriber_id), action=body.action, version=subscriber.version)
        return JSONResponse({"subscriber_id": subscriber_id, "version": subscriber.version})

    @app.delete("/v1/subscribers/{subscriber_id}")
    async def erase_subscriber(subscriber_id: str, request: Request) -> JSONResponse:
        actor = authenticate(request.headers.get("authorization"), keys)
        erased = await run(subscribers().erase, subscriber_id, f"api:{actor}")
        if not erased:
            raise ApiError(404, f"subscriber_id: no subscriber {subscriber_id!r}", reason="not_found", field="subscriber_id")
        log.info("subscriber.erased", subscriber=hashed(subscriber_id))
        return JSONResponse({"subscriber_id": subscriber_id, "erased": True})

    # -- links from emails: no cookies, no API key, the token is the credential -----------------
    @app.get("/u/{token}")
    async def unsubscribe_page(token: str) -> HTMLResponse:
        claims = verify(token, "unsubscribe")
        scope = f" from the list {html.escape(claims.list_id)}" if claims.list_id else " from all marketing email"
        return page("Unsubscribe", f"<p>Unsubscribe{scope}?</p>"
                    f'<form method="post" action="/u/{html.escape(token)}">'
                    '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                    '<button type="submit">Unsubscribe</button></form>')

    @app.post("/u/{token}")
    async def unsubscribe_one_click(token: str) -> HTMLResponse:
        claims = verify(token, "unsubscribe")
        await run(subscribers().change, claims.subscriber_id, "unsubscribe",
                  list_id=claims.list_id or None, actor="link:one-click", reason="one-click")
        log.info("consent.unsubscribed", subscriber=hashed(claims.subscriber_id), via="one-click")
        return page("Unsubscribed", "<p>You are unsubscribed. No further marketing email will be sent.</p>")

    @app.get("/p/{token}")
    async def preferences_page(token: str) -> HTMLResponse:
        claims = verify(token, "preferences")
        view = await asyncio.to_thread(subscribers().view, claims.subscriber_id)
        if view is None or view.erased:
            raise ApiError(404, "no such subscriber", reason="not_found", field="token")
        rows = "".join(
            f'<label><input type="checkbox" name="list" value="{html.escape(list_id)}"'
            f'{" checked" if status == "subscribed" else ""}> {html.escape(list_id)} ({status})</label><br>'
            for list_id, status in sorted(view.lists.items())
        )
        everything = "" if view.globally_unsubscribed else " checked"
        return page("Email preferences",
                    f'<form method="post" action="/p/{html.escape(token)}">{rows}'
                    f'<label><input type="checkbox" name="marketing" value="on"{everything}> Marketing email</label><br>'
                    '<input type="hidden" name="submitted" value="1">'
                    '<button type="submit">Save</button></form>')

    @app.post("/p/{token}")
    async def preferences_save(token: str, request: Request) -> HTMLResponse:
        claims = verify(token, "preferences")
        form = parse_qs((await read_body(request, MAX_BODY)).decode("utf-8", "replace"))
        wanted = set(form.get("list", []))
        marketing = form.get("marketing", [""])[0] == "on"
        await run(apply_preferences, subscribers(), claims.subscriber_id, wanted, marketing)
        log.info("consent.preferences_saved", subscriber=hashed(claims.subscriber_id))
        return page("Preferences saved", "<p>Your email preferences are saved.</p>")

    @app.get("/c/{token}")
    async def confirm_page(token: str) -> HTMLResponse:
        claims = verify(token, "confirm")
        return page("Confirm your subscription",
                    f"<p>Confirm your subscription to {html.escape(claims.list_id)}?</p>"
                    f'<form method="post" action="/c/{html.escape(token)}"><button type="submit">Confirm</button></form>')

    @app.post("/c/{token}")
    async def confirm(token: str) -> HTMLResponse:
        claims = verify(token, "confirm")
        subscriber = await asyncio.to_thread(subscribers().find, claims.subscriber_id)
        if subscriber is not None and subscriber.lists.get(claims.list_id) == "subscribed":
            return page("Confirmed", "<p>Your subscription was already confirmed.</p>")
        await run(subscribers().change, claims.subscriber_id, "confirm_opt_in", list_id=claims.list_id, actor="link:confirm")
        return page("Confirmed", "<p>Your subscription is confirmed.</p>")


def apply_preferences(app: SubscribersApplication, subscriber_id: str, wanted: set[str], marketing: bool) -> None:
    """Make lists and the global switch match the submitted form, in one save."""
    subscriber = app.get(subscriber_id)
    for list_id, status in sorted(subscriber.lists.items()):
        if list_id in wanted and status == "unsubscribed":
            subscriber.subscribe(list_id, actor="link:preferences")
        elif list_id not in wanted and status != "unsubscribed":
            subscriber.unsubscribe(list_id, actor="link:preferences", reason="preferences")
    if marketing:
        subscriber.resubscribe(actor="link:preferences")
    else:
        subscriber.unsubscribe(None, actor="link:preferences", reason="preferences")
    app.save(subscriber)


def page(title: str, body: str) -> HTMLResponse:
    # No redirects, no cookies, no scripts: mailbox providers POST here without a browser.
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
