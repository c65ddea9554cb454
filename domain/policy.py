"""The send policy gate: may this intent go now, later, or not at all?

One decision per intent, taken where the subscriber's state lives (send intents are keyed by
subscriber). In order: address suppression (hard bounce), consent (unsubscribe, complaint, the
consent stage's verdict), sending-identity and mailbox-provider pauses and rate limits set by the
reputation processor, quiet hours in the subscriber's time zone, then frequency caps. Transactional
mail is exempt from consent, quiet hours and caps, but not from a bad address or a provider pause.

Pure: the caller passes `now`, the subscriber's cap state and the reputation states.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Any, Literal, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.events import DeliveryEvent, SendIntent

CHANNEL_EMAIL = "email"
MAX_REMEMBERED_SENDS = 200
PAUSE_RECHECK = timedelta(minutes=15)

_PROVIDERS = {
    "gmail.com": "gmail", "googlemail.com": "gmail",
    "outlook.com": "outlook", "hotmail.com": "outlook", "live.com": "outlook", "msn.com": "outlook",
    "yahoo.com": "yahoo", "aol.com": "yahoo", "ymail.com": "yahoo",
    "icloud.com": "apple", "me.com": "apple", "mac.com": "apple",
}
_PROVIDER_LABELS = {"gmail": "gmail", "googlemail": "gmail", "outlook": "outlook", "hotmail": "outlook",
                    "live": "outlook", "msn": "outlook", "yahoo": "yahoo", "aol": "yahoo", "ymail": "yahoo",
                    "icloud": "apple", "me": "apple", "mac": "apple"}


def provider_of(domain: str) -> str:
    """The mailbox provider of a recipient domain: gmail, outlook, yahoo, apple or other.

    Country variants (`hotmail.co.uk`, `yahoo.fr`) count by their first label.
    """
    domain = domain.strip().lower().rstrip(".").rsplit("@", 1)[-1]
    if domain in _PROVIDERS:
        return _PROVIDERS[domain]
    first = domain.split(".", 1)[0]
    if "." in domain and first in _PROVIDER_LABELS and first not in ("me", "mac", "live", "msn"):
        return _PROVIDER_LABELS[first]
    return "other"


# -- configuration ----------------------------------------------------------------------------


class PolicyConfigError(ValueError):
    """A cap or quiet-hours setting cannot be parsed; the message names the setting."""


@dataclass(frozen=True)
class FrequencyCap:
    """At most `limit` marketing sends per rolling `window` on `channel`.

    Journey priorities: intents below `priority_threshold` may fill only `limit - reserved`, so the
    last `reserved` slots of the window stay free for higher-priority journeys.
    """

    limit: int
    window: timedelta
    channel: str = CHANNEL_EMAIL
    reserved: int = 0
    priority_threshold: int = 1

    def allowance(self, priority: int) -> int:
        return self.limit if priority >= self.priority_threshold else max(self.limit - self.reserved, 0)


@dataclass(frozen=True)
class QuietHours:
    """Local times [start, end) when marketing waits (`defer`) or is dropped (`skip`)."""

    start: time
    end: time
    mode: Literal["defer", "skip"] = "defer"

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # spans midnight, e.g. 21:00-08:00

    def next_allowed(self, local: datetime) -> datetime:
        """The first moment at or after `local` (aware, local zone) outside quiet hours."""
        candidate = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if candidate <= local:
            candidate += timedelta(days=1)
        return candidate


@dataclass(frozen=True)
class PolicyConfig:
    caps: tuple[FrequencyCap, ...] = ()
    quiet_hours: QuietHours | None = None
    default_timezone: str = "UTC"
    throttled_rate_per_second: float = 5.0


_WINDOW = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_window(text: str) -> timedelta:
    match = _WINDOW.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise PolicyConfigError(f"window {text!r}: expected a positive number and a unit s/m/h/d/w, like 24h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_caps(text: str) -> tuple[FrequencyCap, ...]:
    """`3/1d,10/7d` or `email:3/1d+1` (`+1`: one slot reserved for priority >= 1 journeys)."""
    caps = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = re.match(r"^(?:(?P<channel>[a-z]+):)?(?P<limit>\d+)/(?P<window>[^+]+)(?:\+(?P<reserved>\d+))?$", item)
        if not match:
            raise PolicyConfigError(f"frequency_cap {item!r}: expected LIMIT/WINDOW like 3/1d, optionally channel: and +RESERVED")
        limit, reserved = int(match["limit"]), int(match["reserved"] or 0)
        if reserved > limit:
            raise PolicyConfigError(f"frequency_cap {item!r}: reserves more slots than the limit")
        caps.append(FrequencyCap(limit, parse_window(match["window"]), match["channel"] or CHANNEL_EMAIL, reserved))
    return tuple(caps)


def parse_quiet_hours(text: str, mode: str = "defer") -> QuietHours | None:
    if not text.strip():
        return None
    if mode not in ("defer", "skip"):
        raise PolicyConfigError(f"quiet_hours_mode {mode!r}: must be 'defer' or 'skip'")
    match = re.match(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$", text.strip())
    if not match:
        raise PolicyConfigError(f"quiet_hours {text!r}: expected HH:MM-HH:MM like 21:00-08:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
        raise PolicyConfigError(f"quiet_hours {text!r}: not a valid, non-empty range of times")
    return QuietHours(time(h1, m1), time(h2, m2), mode)  # type: ignore[arg-type]


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyConfigError(f"default_timezone {name!r}: not an IANA time zone") from None
    return name


# -- decisions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    action: Literal["send"] = "send"


@dataclass(frozen=True)
class Defer:
    until: datetime
    reason: str
    action: Literal["defer"] = "defer"


@dataclass(frozen=True)
class Skip:
    reason: str
    action: Literal["skip"] = "skip"


Decision = Send | Defer | Skip

ConsentCheck = Any  # callable(state: dict, list_id: str | None) -> tuple[bool, str]


@dataclass(frozen=True)
class GateInput:
    """Everything the gate knows about one intent besides the intent itself."""

    caps_state: Mapping[str, Any] = field(default_factory=dict)
    consent_state: Mapping[str, Any] | None = None
    reputation: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    rate_state: Mapping[str, Any] = field(default_factory=dict)


def decide(
    intent: SendIntent,
    now: datetime,
    config: PolicyConfig,
    gate: GateInput,
    *,
    sending_domain: str,
    may_send_marketing: ConsentCheck | None = None,
) -> Decision:
    """Send, defer or skip this intent now; every non-send carries its reason."""
    marketing = not intent.transactional
    suppression = gate.caps_state.get("suppressed", {})
    if suppression.get("all"):
        return Skip(f"suppressed: {suppression['all']}")
    if marketing and suppression.get("marketing"):
        return Skip(f"suppressed: {suppression['marketing']}")
    if marketing and may_send_marketing is not None and gate.consent_state is not None:
        allowed, why = may_send_marketing(dict(gate.consent_state), _list_id(intent))
        if not allowed:
            return Skip(f"consent: {why}")

    throttle = _reputation_gate(intent, now, config, gate, sending_domain)
    if throttle is not None:
        return throttle
    if not marketing:
        return Send()

    if config.quiet_hours is not None:
        local = now.astimezone(subscriber_zone(intent, config.default_timezone))
        if config.quiet_hours.contains(local.time()):
            if config.quiet_hours.mode == "skip":
                return Skip(f"quiet hours {_hhmm(config.quiet_hours)} in {local.tzinfo}")
            until = config.quiet_hours.next_allowed(local).astimezone(timezone.utc)
            return Defer(until, f"quiet hours {_hhmm(config.quiet_hours)} in {local.tzinfo}")

    sends = _recent_sends(gate.caps_state, now, max((c.window for c in config.caps), default=timedelta(0)))
    for cap in config.caps:
        in_window = sum(1 for at in sends.values() if at > now - cap.window)
        allowance = cap.allowance(intent.priority)
        if in_window >= allowance:
            reserved = " (remaining slots reserved for higher priority)" if allowance < cap.limit else ""
            return Skip(f"frequency cap {cap.limit}/{_window_text(cap.window)} reached{reserved}")
    return Send()


def subscriber_zone(intent: SendIntent, default: str) -> ZoneInfo:
    """The subscriber's IANA zone from the `timezone` trait; the default when absent or unknown."""
    traits = intent.variables.get("subscriber")
    name = traits.get("timezone") if isinstance(traits, dict) else None
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(default)


def _reputation_gate(
    intent: SendIntent, now: datetime, config: PolicyConfig, gate: GateInput, sending_domain: str
) -> Decision | None:
    provider = provider_of(intent.to)
    for key in (f"{sending_domain}|all", f"{sending_domain}|{provider}"):
        state = gate.reputation.get(key) or {}
        status = state.get("state", "healthy")
        if status == "paused":
            until = _parse_time(state.get("until")) or now + PAUSE_RECHECK
            return Defer(max(until, now + timedelta(seconds=1)), f"reputation: {key} paused")
        if status == "throttled":
            rate = float(state.get("rate_per_second") or config.throttled_rate_per_second)
            next_slot = _parse_time(gate.rate_state.get(key))
            if next_slot is not None and next_slot > now:
                return Defer(next_slot, f"reputation: {key} throttled to {rate:g}/s")
    return None


def take_rate_slot(rate_state: dict, intent: SendIntent, now: datetime, reputation: Mapping[str, Mapping[str, Any]],
                   *, sending_domain: str, config: PolicyConfig) -> None:
    """After a send decision: the next free slot of each throttled key moves on by 1/rate."""
    provider = provider_of(intent.to)
    for key in (f"{sending_domain}|all", f"{sending_domain}|{provider}"):
        state = reputation.get(key) or {}
        if state.get("state") == "throttled":
            rate = float(state.get("rate_per_second") or config.throttled_rate_per_second)
            current = _parse_time(rate_state.get(key)) or now
            rate_state[key] = (max(current, now) + timedelta(seconds=1 / rate)).isoformat()


def record_send(caps_state: Mapping[str, Any], intent: SendIntent, now: datetime) -> dict:
    """Cap state with this marketing send counted (by intent id, so a replay counts once)."""
    if intent.transactional:
        return dict(caps_state)
    sends = dict(caps_state.get("sends", {}))
    sends[intent.intent_id] = now.isoformat()
    if len(sends) > MAX_REMEMBERED_SENDS:
        sends = dict(sorted(sends.items(), key=lambda item: item[1])[-MAX_REMEMBERED_SENDS:])
    return {**caps_state, "sends": sends}


def apply_delivery(caps_state: Mapping[str, Any], delivery: DeliveryEvent) -> Mapping[str, Any]:
    """Cap state with suppression from feedback.

    A hard bounce stops every send to the subscriber (the address is bad: even transactional mail
    would bounce); a complaint or unsubscribe stops marketing. Returns the same object when nothing
    changes, so callers can skip the table write.
    """
    suppressed = dict(caps_state.get("suppressed", {}))
    when = delivery.occurred_at.isoformat()
    if delivery.kind == "bounced" and delivery.bounce_type == "hard":
        scope = "all"
    elif delivery.kind in ("complained", "unsubscribed"):
        scope = "marketing"
    else:
        return caps_state
    if scope in suppressed:
        return caps_state
    suppressed[scope] = f"{'hard bounce' if scope == 'all' else delivery.kind} at {when}"
    return {**caps_state, "suppressed": suppressed}


def _recent_sends(caps_state: Mapping[str, Any], now: datetime, longest: timedelta) -> dict[str, datetime]:
    out = {}
    for intent_id, at in caps_state.get("sends", {}).items():
        when = _parse_time(at)
        if when is not None and when > now - longest:
            out[intent_id] = when
    return out


def _list_id(intent: SendIntent) -> str | None:
    value = intent.variables.get("list_id")
    return value if isinstance(value, str) and value else None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _hhmm(quiet: QuietHours) -> str:
    return f"{quiet.start:%H:%M}-{quiet.end:%H:%M}"


def _window_text(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
