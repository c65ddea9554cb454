"""Sending identities: the from-domain and address mail goes out as, and the state operators or
automated remediation put it in (active, throttled, paused)."""

from __future__ import annotations

import re
import uuid
from typing import Any, Literal

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event

IDENTITY_NAMESPACE = uuid.UUID("3b0d8a1e-97c4-4f0e-b5d2-61a9e8c4f7d3")
DOMAIN_PATTERN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$")
IdentityState = Literal["active", "throttled", "paused"]
STATES: tuple[str, ...] = ("active", "throttled", "paused")


class SendingIdentityError(ValueError):
    pass


def identity_aggregate_id(from_domain: str) -> uuid.UUID:
    return uuid.uuid5(IDENTITY_NAMESPACE, from_domain.lower())


class SendingIdentity(Aggregate):
    @event("Registered")
    def __init__(
        self,
        from_domain: str,
        from_address: str,
        dkim_selector: str,
        ip_pool: str,
        warmup_plan: list[dict[str, Any]],
        actor: str,
    ) -> None:
        if not DOMAIN_PATTERN.match(from_domain):
            raise SendingIdentityError(f"from_domain: {from_domain!r} is not a domain name")
        if not from_address.lower().endswith("@" + from_domain.lower()):
            raise SendingIdentityError(f"from_address: must be an address at {from_domain}")
        self.from_domain = from_domain.lower()
        self.from_address = from_address
        self.dkim_selector = dkim_selector
        self.ip_pool = ip_pool
        self.warmup_plan = warmup_plan
        self.state = "active"
        self.state_reason = ""

    @classmethod
    def create_id(cls, from_domain: str, **_: Any) -> uuid.UUID:  # type: ignore[override]
        return identity_aggregate_id(from_domain)

    def set_state(self, state: str, reason: str, actor: str) -> None:
        """`actor` is an operator's name or `remediation:<rule>` when automation acted."""
        if state not in STATES:
            raise SendingIdentityError(f"state: must be one of {', '.join(STATES)}")
        if state != self.state:
            self._state_changed(state, reason, actor)

    @event("StateChanged")
    def _state_changed(self, state: str, reason: str, actor: str) -> None:
        self.state = state
        self.state_reason = reason

    @event("WarmupPlanChanged")
    def change_warmup_plan(self, warmup_plan: list[dict[str, Any]], actor: str) -> None:
        self.warmup_plan = warmup_plan


class SendingIdentitiesApplication(Application):
    name = "SendingIdentities"
    log_section_size = 500

    def register(self, from_domain: str, from_address: str, *, dkim_selector: str = "tidings", ip_pool: str = "default",
                 warmup_plan: list[dict[str, Any]] | None = None, actor: str = "operator") -> SendingIdentity:
        if self.find(from_domain) is not None:
            raise SendingIdentityError(f"from_domain: {from_domain!r} is already registered")
        identity = SendingIdentity(
            from_domain=from_domain, from_address=from_address, dkim_selector=dkim_selector, ip_pool=ip_pool,
            warmup_plan=warmup_plan or [], actor=actor,
        )
        self.save(identity)
        return identity

    def set_state(self, from_domain: str, state: str, reason: str, actor: str) -> SendingIdentity:
        identity = self.find(from_domain)
        if identity is None:
            raise SendingIdentityError(f"from_domain: no sending identity {from_domain!r}")
        identity.set_state(state, reason, actor)
        self.save(identity)
        return identity

    def find(self, from_domain: str) -> SendingIdentity | None:
        try:
            return self.repository.get(identity_aggregate_id(from_domain))
        except AggregateNotFoundError:
            return None
