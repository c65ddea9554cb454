"""Who may be emailed: the Subscriber aggregate and the application that stores it.

Personal data (email address, names, free-text attributes) never enters an event in clear text:
the application seals it with the subscriber's own key through a `PersonalDataCipher` (an edge
implements it; `connectors/crypto.py`). Erasing a subscriber destroys that key, so the events that
stay in the store, and every copy relayed from them, reveal nothing.

Every stored event maps to exactly one `ConsentChanged` record (`consent_change_of`): the relay
sends it to `tidings.consent`, keyed by subscriber id, and the worker folds it (domain/consent.py).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event

SUBSCRIBER_NAMESPACE = uuid.UUID("6f1c3f64-5b7e-4d0c-9a41-2d1f4a5b9e10")
LIST_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
SUBSCRIBER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@+\-]{1,128}$")
EMAIL_PATTERN = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9.\-]{1,253}\.[A-Za-z]{2,63}$")

SuppressionReason = Literal["hard_bounce", "complaint", "manual"]
SUPPRESSION_REASONS: tuple[str, ...] = ("hard_bounce", "complaint", "manual")
ListStatus = Literal["subscribed", "unsubscribed", "pending"]

# Reasons carried by ConsentChanged records; the consent fold (domain/consent.py) reads them.
REASON_REGISTERED = "registered"
REASON_PROFILE_UPDATED = "profile-updated"
REASON_OPT_IN_PENDING = "double-opt-in-pending"
REASON_OPT_IN_CONFIRMED = "double-opt-in-confirmed"
REASON_UNSUPPRESSED = "unsuppressed"


class SubscriberError(ValueError):
    """A command a subscriber cannot take; the message names the field and the problem."""


class PersonalDataCipher(Protocol):
    """Seals personal data with the subscriber's own key (crypto-shredding)."""

    def seal(self, subscriber_id: str, plaintext: str) -> str: ...

    def open(self, subscriber_id: str, sealed: str) -> str | None:
        """The plaintext, or None when the subscriber's key was destroyed."""
        ...

    def destroy(self, subscriber_id: str) -> None: ...


def subscriber_aggregate_id(subscriber_id: str) -> uuid.UUID:
    """Aggregate ids derive from the subscriber id, so a lookup needs no index."""
    return uuid.uuid5(SUBSCRIBER_NAMESPACE, subscriber_id)


def check_subscriber_id(subscriber_id: str) -> str:
    if not isinstance(subscriber_id, str) or not SUBSCRIBER_ID_PATTERN.match(subscriber_id):
        raise SubscriberError("subscriber_id: 1-128 characters of letters, digits and _ . : @ + -")
    return subscriber_id


def check_list_id(list_id: str) -> str:
    if not isinstance(list_id, str) or not LIST_ID_PATTERN.match(list_id):
        raise SubscriberError(f"list_id: {list_id!r} is not 1-64 characters of letters, digits and _ . : -")
    return list_id


def check_email(email: str) -> str:
    if not isinstance(email, str) or not EMAIL_PATTERN.match(email.strip()):
        raise SubscriberError("email: not an email address")
    return email.strip()


class Subscriber(Aggregate):
    """One person's identifiers and consent. Past-tense events; `actor` says who did it."""

    @event("Registered")
    def __init__(
        self,
        subscriber_id: str,
        email_sealed: str,
        external_id: str,
        timezone: str,
        locale: str,
        actor: str,
    ) -> None:
        self.subscriber_id = subscriber_id
        self.email_sealed = email_sealed
        self.external_id = external_id
        self.timezone = timezone
        self.locale = locale
        self.attributes_sealed = ""
        self.globally_unsubscribed = False
        self.suppressed_reason = ""
        self.erased = False
        self.lists: dict[str, str] = {}

    @classmethod
    def create_id(cls, subscriber_id: str, **_: Any) -> uuid.UUID:  # type: ignore[override]
        return subscriber_aggregate_id(subscriber_id)

    # -- commands ---------------------------------------------------------------------------------
    def update_profile(self, email_sealed: str, timezone: str, locale: str, attributes_sealed: str, actor: str) -> None:
        self._require_not_erased()
        self._profile_updated(email_sealed, timezone, locale, attributes_sealed, actor)

    def subscribe(self, list_id: str, actor: str, double_opt_in: bool = False) -> None:
        self._require_not_erased()
        check_list_id(list_id)
        if double_opt_in and self.lists.get(list_id) != "subscribed":
            if self.lists.get(list_id) != "pending":
                self._opt_in_requested(list_id, actor)
        elif self.lists.get(list_id) != "subscribed":
            self._list_subscribed(list_id, actor)

    def confirm_opt_in(self, list_id: str, actor: str) -> None:
        self._require_not_erased()
        if self.lists.get(list_id) != "pending":
            raise SubscriberError(f"list_id: no pending double opt-in for list {list_id!r}")
        self._opt_in_confirmed(list_id, actor)

    def unsubscribe(self, list_id: str | None, actor: str, reason: str = "") -> None:
        """From one list, or from all marketing when `list_id` is None. Repeating it records nothing."""
        self._require_not_erased()
        if list_id is None:
            if not self.globally_unsubscribed:
                self._globally_unsubscribed(reason, actor)
            return
        check_list_id(list_id)
        if self.lists.get(list_id) != "unsubscribed":
            self._list_unsubscribed(list_id, reason, actor)

    def resubscribe(self, actor: str) -> None:
        self._require_not_erased()
        if self.globally_unsubscribed:
            self._globally_resubscribed(actor)

    def suppress(self, reason: str, actor: str) -> None:
        self._require_not_erased()
        if reason not in SUPPRESSION_REASONS:
            raise SubscriberError(f"reason: must be one of {', '.join(SUPPRESSION_REASONS)}")
        if self.suppressed_reason != reason:
            self._suppressed(reason, actor)

    def unsuppress(self, actor: str) -> None:
        """Only an operator lifts a suppression; a hard bounce or complaint never lifts itself."""
        self._require_not_erased()
        if self.suppressed_reason:
            self._unsuppressed(actor)

    def erase(self, actor: str) -> None:
        if not self.erased:
            self._erased(actor)

    def _require_not_erased(self) -> None:
        if self.erased:
            raise SubscriberError(f"subscriber_id: {self.subscriber_id!r} was erased")

    # -- events -----------------------------------------------------------------------------------
    @event("ProfileUpdated")
    def _profile_updated(self, email_sealed: str, timezone: str, locale: str, attributes_sealed: str, actor: str) -> None:
        self.email_sealed = email_sealed
        self.timezone = timezone
        self.locale = locale
        self.attributes_sealed = attributes_sealed

    @event("OptInRequested")
    def _opt_in_requested(self, list_id: str, actor: str) -> None:
        self.lists[list_id] = "pending"

    @event("OptInConfirmed")
    def _opt_in_confirmed(self, list_id: str, actor: str) -> None:
        self.lists[list_id] = "subscribed"

    @event("ListSubscribed")
    def _list_subscribed(self, list_id: str, actor: str) -> None:
        self.lists[list_id] = "subscribed"

    @event("ListUnsubscribed")
    def _list_unsubscribed(self, list_id: str, reason: str, actor: str) -> None:
        self.lists[list_id] = "unsubscribed"

    @event("GloballyUnsubscribed")
    def _globally_unsubscribed(self, reason: str, actor: str) -> None:
        self.globally_unsubscribed = True

    @event("GloballyResubscribed")
    def _globally_resubscribed(self, actor: str) -> None:
        self.globally_unsubscribed = False

    @event("Suppressed")
    def _suppressed(self, reason: str, actor: str) -> None:
        self.suppressed_reason = reason

    @event("Unsuppressed")
    def _unsuppressed(self, actor: str) -> None:
        self.suppressed_reason = ""

    @event("Erased")
    def _erased(self, actor: str) -> None:
        # The sealed values stay in old events; destroying the key is what makes them unreadable.
        self.erased = True
        self.email_sealed = ""
        self.attributes_sealed = ""


ConsentStatus = Literal["subscribed", "unsubscribed", "suppressed", "erased"]


def consent_change_of(domain_event: Any) -> tuple[ConsentStatus, str, str]:
    """(status, list_id, reason) of the ConsentChanged record one stored Subscriber event becomes."""
    name = type(domain_event).__name__
    list_id = getattr(domain_event, "list_id", "")
    reason = getattr(domain_event, "reason", "")
    mapping: dict[str, tuple[ConsentStatus, str, str]] = {
        "Registered": ("subscribed", "", REASON_REGISTERED),
        "ProfileUpdated": ("subscribed", "", REASON_PROFILE_UPDATED),
        "OptInRequested": ("unsubscribed", list_id, REASON_OPT_IN_PENDING),
        "OptInConfirmed": ("subscribed", list_id, REASON_OPT_IN_CONFIRMED),
        "ListSubscribed": ("subscribed", list_id, ""),
        "ListUnsubscribed": ("unsubscribed", list_id, reason),
        "GloballyUnsubscribed": ("unsubscribed", "", reason),
        "GloballyResubscribed": ("subscribed", "", ""),
        "Suppressed": ("suppressed", "", reason),
        "Unsuppressed": ("subscribed", "", REASON_UNSUPPRESSED),
        "Erased": ("erased", "", ""),
    }
    if name not in mapping:
        raise ValueError(f"no consent mapping for subscriber event {name}")
    return mapping[name]


@dataclass(frozen=True)
class SubscriberView:
    """A subscriber as an operator sees it; personal data opened with the subscriber's key."""

    subscriber_id: str
    email: str | None
    external_id: str
    timezone: str
    locale: str
    attributes: str | None
    globally_unsubscribed: bool
    suppressed_reason: str
    erased: bool
    lists: dict[str, str]
    version: int


@dataclass(frozen=True)
class HistoryEntry:
    version: int
    event: str
    actor: str
    at: str
    detail: dict[str, Any]


class SubscribersApplication(Application):
    """Commands on subscribers. `save()` is the only write path."""

    name = "Subscribers"
    log_section_size = 500

    def __init__(self, env: dict[str, str] | None = None, cipher: PersonalDataCipher | None = None) -> None:
        super().__init__(env)
        if cipher is None:
            raise SubscriberError("a PersonalDataCipher is required: personal data is never stored in clear")
        self.cipher = cipher

    def register_or_update(
        self,
        subscriber_id: str,
        email: str,
        *,
        external_id: str = "",
        timezone: str = "UTC",
        locale: str = "en",
        attributes: str = "",
        lists: list[str] | None = None,
        double_opt_in: bool = False,
        actor: str = "api",
    ) -> Subscriber:
        check_subscriber_id(subscriber_id)
        email = check_email(email)
        for list_id in lists or []:
            check_list_id(list_id)
        subscriber = self.find(subscriber_id)
        if subscriber is None:
            subscriber = Subscriber(
                subscriber_id=subscriber_id,
                email_sealed=self.cipher.seal(subscriber_id, email),
                external_id=external_id,
                timezone=timezone,
                locale=locale,
                actor=actor,
            )
            if attributes:
                subscriber.update_profile(
                    subscriber.email_sealed, timezone, locale, self.cipher.seal(subscriber_id, attributes), actor
                )
        elif subscriber.erased:
            raise SubscriberError(f"subscriber_id: {subscriber_id!r} was erased")
        elif self._profile_differs(subscriber, email, timezone, locale, attributes):
            subscriber.update_profile(
                self.cipher.seal(subscriber_id, email),
                timezone,
                locale,
                self.cipher.seal(subscriber_id, attributes) if attributes else "",
                actor,
            )
        for list_id in lists or []:
            subscriber.subscribe(list_id, actor, double_opt_in=double_opt_in)
        self.save(subscriber)
        return subscriber

    def _profile_differs(self, subscriber: Subscriber, email: str, timezone: str, locale: str, attributes: str) -> bool:
        current_attributes = self.cipher.open(subscriber.subscriber_id, subscriber.attributes_sealed) if subscriber.attributes_sealed else ""
        return (
            self.cipher.open(subscriber.subscriber_id, subscriber.email_sealed) != email
            or subscriber.timezone != timezone
            or subscriber.locale != locale
            or (current_attributes or "") != attributes
        )

    def change(self, subscriber_id: str, command: str, **kwargs: Any) -> Subscriber:
        """Run one consent command (`subscribe`, `unsubscribe`, `confirm_opt_in`, ...) and save."""
        if command not in {"subscribe", "unsubscribe", "confirm_opt_in", "resubscribe", "suppress", "unsuppress"}:
            raise SubscriberError(f"command: unknown consent command {command!r}")
        subscriber = self.get(subscriber_id)
        getattr(subscriber, command)(**kwargs)
        self.save(subscriber)
        return subscriber

    def erase(self, subscriber_id: str, actor: str) -> bool:
        """Record the erasure, then destroy the key. False when there was nobody to erase."""
        subscriber = self.find(subscriber_id)
        if subscriber is None:
            return False
        subscriber.erase(actor)
        self.save(subscriber)
        self.cipher.destroy(subscriber_id)
        return True

    def find(self, subscriber_id: str) -> Subscriber | None:
        try:
            return self.repository.get(subscriber_aggregate_id(subscriber_id))
        except AggregateNotFoundError:
            return None

    def get(self, subscriber_id: str) -> Subscriber:
        subscriber = self.find(check_subscriber_id(subscriber_id))
        if subscriber is None:
            raise SubscriberError(f"subscriber_id: no subscriber {subscriber_id!r}")
        return subscriber

    def view(self, subscriber_id: str) -> SubscriberView | None:
        subscriber = self.find(subscriber_id)
        if subscriber is None:
            return None
        open_ = self.cipher.open
        return SubscriberView(
            subscriber_id=subscriber.subscriber_id,
            email=open_(subscriber_id, subscriber.email_sealed) if subscriber.email_sealed else None,
            external_id=subscriber.external_id,
            timezone=subscriber.timezone,
            locale=subscriber.locale,
            attributes=open_(subscriber_id, subscriber.attributes_sealed) if subscriber.attributes_sealed else None,
            globally_unsubscribed=subscriber.globally_unsubscribed,
            suppressed_reason=subscriber.suppressed_reason,
            erased=subscriber.erased,
            lists=dict(subscriber.lists),
            version=subscriber.version,
        )

    def history(self, subscriber_id: str) -> list[HistoryEntry]:
        """Every stored event of a subscriber: who did what and when (no personal data)."""
        entries = []
        for stored in self.events.get(subscriber_aggregate_id(subscriber_id)):
            status, list_id, reason = consent_change_of(stored)
            entries.append(
                HistoryEntry(
                    version=stored.originator_version,
                    event=type(stored).__name__,
                    actor=getattr(stored, "actor", ""),
                    at=stored.timestamp.isoformat(),
                    detail={"status": status, "list_id": list_id, "reason": reason},
                )
            )
        return entries
