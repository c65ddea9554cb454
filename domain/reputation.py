"""Sender reputation: rolling event-time windows, rates, a 0-100 score, a remediation state machine
per sending identity and mailbox provider, warm-up plans, and the send admission rule.

Everything here is pure: callers pass `now`. docs/reputation.md is the user-facing description;
the defaults below cite their sources there.

Windows are bounded time buckets in EVENT time (the `occurred_at` of delivery events): 1-minute
buckets for the 1 h window, 1-hour buckets for the 24 h and 7 d windows. A window ends at the newest
event seen for its key (`window_end`) and covers the N buckets up to and including that event's
bucket, so the same counts can be recomputed from ClickHouse with the same bucket arithmetic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Mapping

from pydantic import Field, field_validator

from domain.events import Contract, DeliveryEvent
from domain.policy import provider_of

COUNTERS = (
    "sent", "accepted", "deferred", "hard_bounced", "soft_bounced", "complained", "opened", "clicked", "unsubscribed",
)
STATES = ("healthy", "warning", "throttled", "paused")
LEVEL = {state: level for level, state in enumerate(STATES)}
ALL_PROVIDERS = "all"

# window name -> (bucket kind, bucket seconds, bucket count)
WINDOWS: dict[str, tuple[str, int, int]] = {"1h": ("m", 60, 60), "24h": ("h", 3600, 24), "7d": ("h", 3600, 168)}
RETAINED = {"m": 60, "h": 168}
JUDGED_WINDOW = "1h"
HYSTERESIS = 0.8  # coming back down needs the rates 20% below the threshold that raised the state


Counts = dict[str, int]


class ReputationConfigError(ValueError):
    """A reputation threshold or warm-up plan cannot be parsed; the message names the field."""


# -- contracts ---------------------------------------------------------------------------------


class ReputationCommand(Contract):
    """An operator's instruction to the reputation stage. Compacted by `action:sending_domain|provider`."""

    command_id: str = Field(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$")
    action: Literal["resume", "warmup", "warmup-clear"]
    sending_domain: str = Field(min_length=1, max_length=253)
    provider: str = ALL_PROVIDERS
    plan: list[int] = Field(default_factory=list)
    issued_at: datetime
    issued_by: str = ""
    schema_version: int = 1

    @field_validator("issued_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)

    @field_validator("plan")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(cap < 1 for cap in value):
            raise ValueError("every daily cap of a warm-up plan must be a positive integer")
        return value

    @property
    def key(self) -> str:
        return f"{self.action}:{self.sending_domain}|{self.provider}"


class ReputationChanged(Contract):
    """A remediation state transition for one identity and provider. Key: `sending_domain|provider`."""

    change_id: str
    sending_domain: str
    provider: str
    traffic: Literal["marketing", "transactional"] = "marketing"
    from_state: str
    to_state: str
    reason: str
    score: float | None = None
    occurred_at: datetime
    schema_version: int = 1

    @property
    def key(self) -> str:
        return f"{self.sending_domain}|{self.provider}"


# -- thresholds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """Rates at which a key moves to warning / throttled / paused (fractions, not percent).

    Complaints: Gmail and Yahoo (2024) ask bulk senders to stay below 0.10 % and never reach 0.30 %;
    Amazon SES pauses at 0.5 %. Bounces (hard): SES reviews at 5 % and pauses at 10 %; 2 % is the common
    "investigate" line. Below `min_sent` sends (bounce rate) or `min_accepted` deliveries (complaint
    rate) in the judged window a rate is not judged at all.
    """

    complaint: tuple[float, float, float] = (0.001, 0.003, 0.005)
    bounce: tuple[float, float, float] = (0.02, 0.05, 0.10)
    min_sent: int = 500
    min_accepted: int = 1000
    throttle_per_minute: int = 60
    warning_per_minute: int | None = None
    transactional_bounce: float = 0.15
    cooldown: timedelta | None = None
    recheck_seconds: int = 60
    on_pause: Literal["defer", "skip"] = "defer"


_RATE = re.compile(r"^(\d+(?:\.\d+)?)(%?)$")
_LADDER_KEYS = ("complaint", "bounce")
_INT_KEYS = ("min_sent", "min_accepted", "throttle_per_minute", "warning_per_minute", "recheck_seconds")


def _rate(text: str, field: str) -> float:
    match = _RATE.match(text.strip())
    if not match:
        raise ReputationConfigError(f"reputation_thresholds {field}: {text!r} is not a rate like 0.3% or 0.003")
    value = float(match.group(1)) / (100 if match.group(2) else 1)
    if not 0 < value <= 1:
        raise ReputationConfigError(f"reputation_thresholds {field}: {text!r} must be above 0 and at most 100%")
    return value


def parse_thresholds(text: str, cooldown_seconds: float = 0.0) -> Thresholds:
    """`complaint=0.1%/0.3%/0.5%,bounce=2%/5%/10%,min_sent=500,...`; empty text: the defaults."""
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not raw:
            raise ReputationConfigError(f"reputation_thresholds {item!r}: expected name=value")
        if name in _LADDER_KEYS:
            steps = raw.split("/")
            if len(steps) != 3:
                raise ReputationConfigError(f"reputation_thresholds {name}: expected warn/throttle/pause like 2%/5%/10%")
            ladder = tuple(_rate(step, name) for step in steps)
            if not ladder[0] < ladder[1] < ladder[2]:
                raise ReputationConfigError(f"reputation_thresholds {name}: warn < throttle < pause must hold")
            values[name] = ladder
        elif name in _INT_KEYS:
            if not raw.isdigit() or int(raw) < 1:
                raise ReputationConfigError(f"reputation_thresholds {name}: {raw!r} is not a positive integer")
            values[name] = int(raw)
        elif name == "transactional_bounce":
            values[name] = _rate(raw, name)
        elif name == "on_pause":
            if raw not in ("defer", "skip"):
                raise ReputationConfigError(f"reputation_thresholds on_pause: {raw!r} must be 'defer' or 'skip'")
            values[name] = raw
        else:
            known = ", ".join((*_LADDER_KEYS, *_INT_KEYS, "transactional_bounce", "on_pause"))
            raise ReputationConfigError(f"reputation_thresholds: unknown name {name!r} (known: {known})")
    if cooldown_seconds < 0:
        raise ReputationConfigError("reputation_cooldown_seconds must not be negative")
    if cooldown_seconds:
        values["cooldown"] = timedelta(seconds=cooldown_seconds)
    return Thresholds(**values)


# -- windows -----------------------------------------------------------------------------------


def counters_of(delivery: DeliveryEvent) -> tuple[str, ...]:
    """Which counters one delivery event moves.

    `sent` counts attempts that reached a final SMTP answer (accepted, bounced, ambiguous). A bounce
    is hard unless marked soft. Policy holds (`deferred` events whose detail starts with `policy:`)
    are the platform's own decision, not the provider's, and are not counted.
    """
    kind = delivery.kind
    if kind == "accepted":
        return ("sent", "accepted")
    if kind == "bounced":
        return ("sent", "soft_bounced" if delivery.bounce_type == "soft" else "hard_bounced")
    if kind == "ambiguous":
        return ("sent",)
    if kind == "deferred":
        return () if delivery.detail.startswith("policy:") else ("deferred",)
    if kind in ("complained", "opened", "clicked", "unsubscribed"):
        return (kind,)
    return ()


def provider_keys(delivery: DeliveryEvent) -> tuple[str, str]:
    """The two keys a delivery counts under: the identity as a whole and its mailbox provider."""
    return ALL_PROVIDERS, provider_of(delivery.recipient_domain) if delivery.recipient_domain else "other"


def _index(when: datetime, seconds: int) -> int:
    return int(when.timestamp()) // seconds


def fold(windows: Mapping[str, Any], delivery: DeliveryEvent) -> dict:
    """Bucketed counts with one delivery folded in (by its event time); old buckets dropped."""
    names = counters_of(delivery)
    if not names:
        return dict(windows)
    at = delivery.occurred_at
    end = _parse(windows.get("end"))
    end = at if end is None or at > end else end
    updated: dict[str, Any] = {"end": end.isoformat()}
    for kind, seconds in (("m", 60), ("h", 3600)):
        buckets = {k: list(v) for k, v in windows.get(kind, {}).items()}
        oldest = _index(end, seconds) - RETAINED[kind] + 1
        index = _index(at, seconds)
        if index >= oldest:
            row = buckets.setdefault(str(index), [0] * len(COUNTERS))
            for name in names:
                row[COUNTERS.index(name)] += 1
        updated[kind] = {k: v for k, v in buckets.items() if int(k) >= oldest}
    return updated


def window_end(windows: Mapping[str, Any]) -> datetime | None:
    return _parse(windows.get("end"))


def window_counts(windows: Mapping[str, Any], window: str, since: datetime | None = None) -> Counts:
    """Counts in `window` ("1h", "24h", "7d") ending at the newest event; only buckets starting at or after `since`
    (a resume judges only what happened after it, to the next bucket boundary)."""
    if window not in WINDOWS:
        raise ReputationConfigError(f"window {window!r}: expected one of {', '.join(WINDOWS)}")
    kind, seconds, count = WINDOWS[window]
    totals = dict.fromkeys(COUNTERS, 0)
    end = window_end(windows)
    if end is None:
        return totals
    last = _index(end, seconds)
    first = last - count + 1
    if since is not None:  # the first bucket that starts at or after `since`
        first = max(first, int(-(-since.timestamp() // seconds)))
    for key, row in windows.get(kind, {}).items():
        if first <= int(key) <= last:
            for name, value in zip(COUNTERS, row):
                totals[name] += value
    return totals


def window_bounds(end: datetime, window: str) -> tuple[datetime, datetime]:
    """[start, end] of a window that ends at `end`: start is the first bucket's start (for SQL)."""
    _, seconds, count = WINDOWS[window]
    start = (_index(end, seconds) - count + 1) * seconds
    return datetime.fromtimestamp(start, timezone.utc), end


# -- rates and score ---------------------------------------------------------------------------


def rates(counts: Mapping[str, int]) -> dict[str, float]:
    sent, accepted = counts.get("sent", 0), counts.get("accepted", 0)

    def ratio(part: int, whole: int) -> float:
        return round(part / whole, 6) if whole else 0.0

    return {
        "bounce_rate": ratio(counts.get("hard_bounced", 0), sent),
        "soft_bounce_rate": ratio(counts.get("soft_bounced", 0), sent),
        "complaint_rate": ratio(counts.get("complained", 0), accepted),
        "deferral_rate": ratio(counts.get("deferred", 0), sent + counts.get("deferred", 0)),
        "open_rate": ratio(counts.get("opened", 0), accepted),
        "click_rate": ratio(counts.get("clicked", 0), accepted),
        "unsubscribe_rate": ratio(counts.get("unsubscribed", 0), accepted),
    }


def _health(rate: float, ladder: tuple[float, float, float]) -> float:
    """100 at 0, 80 at warn, 50 at throttle, 20 at pause, 0 at twice pause; linear in between."""
    points = ((0.0, 100.0), (ladder[0], 80.0), (ladder[1], 50.0), (ladder[2], 20.0), (2 * ladder[2], 0.0))
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if rate <= x1:
            return y0 + (y1 - y0) * (rate - x0) / (x1 - x0)
    return 0.0


def score(counts: Mapping[str, int], thresholds: Thresholds) -> float | None:
    """0-100: the lower of the bounce and complaint health; None when neither has the minimum volume.

    Health is piecewise linear in the rate: 100 at zero, 80 at the warn threshold, 50 at throttle,
    20 at pause, 0 at twice the pause rate. So >= 80 means healthy, < 20 means pause territory.
    """
    judged = _judged(counts, thresholds)
    if not judged:
        return None
    return round(min(_health(rate, ladder) for _, rate, ladder in judged), 2)


def _judged(counts: Mapping[str, int], thresholds: Thresholds) -> list[tuple[str, float, tuple[float, float, float]]]:
    out = []
    r = rates(counts)
    if counts.get("sent", 0) >= thresholds.min_sent:
        out.append(("bounce", r["bounce_rate"], thresholds.bounce))
    if counts.get("accepted", 0) >= thresholds.min_accepted:
        out.append(("complaint", r["complaint_rate"], thresholds.complaint))
    return out


def severity(counts: Mapping[str, int], thresholds: Thresholds,
             scale: float = 1.0) -> tuple[int | None, str, bool]:
    """(level 0-3 or None when nothing is judged, why, whether every rate was judged).

    `scale` < 1 lowers every threshold: used for coming back down, so a rate hovering at a threshold
    does not flap between two states.
    """
    judged = _judged(counts, thresholds)
    if not judged:
        return None, "below minimum volume", False
    level, why = 0, "rates below thresholds"
    for name, rate, ladder in judged:
        ladder = tuple(limit * scale for limit in ladder)  # type: ignore[assignment]
        metric_level = sum(1 for limit in ladder if rate >= limit)
        if metric_level > level:
            limit = ladder[metric_level - 1]
            level, why = metric_level, f"{name} rate {rate:.2%} >= {limit:.2%} over {JUDGED_WINDOW}"
    return level, why, len(judged) == 2


# -- state machine -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    traffic: Literal["marketing", "transactional"]
    from_state: str
    to_state: str
    reason: str


def new_record(now: datetime) -> dict:
    return {"state": "healthy", "since": now.isoformat(), "reason": "", "tx_state": "healthy", "judged_from": None}


def evaluate(record: Mapping[str, Any], windows: Mapping[str, Any], thresholds: Thresholds,
             now: datetime) -> tuple[dict, list[Transition]]:
    """The record after judging the 1 h window (events since the last resume only), and its transitions.

    Escalation is immediate to the level the rates reach. Warning and throttled come back down when
    every rate is judged and at least 20% below the thresholds (hysteresis: no flapping). Paused stays until an operator resumes, or, when a cool-down is
    configured, until it has elapsed. Below the minimum volume nothing changes.
    Transactional mail pauses only on a hard-bounce rate at `transactional_bounce`, and resumes with
    marketing.
    """
    current = {**new_record(now), **record}
    judged = window_counts(windows, JUDGED_WINDOW, _parse(current.get("judged_from")))
    level, why, complete = severity(judged, thresholds)
    transitions: list[Transition] = []
    state = current["state"]
    if state == "paused":
        since = _parse(current["since"]) or now
        if thresholds.cooldown is not None and now - since >= thresholds.cooldown:
            return resume(current, now, f"cool-down of {int(thresholds.cooldown.total_seconds())}s elapsed")
    elif level is not None and level > LEVEL[state]:
        transitions.append(Transition("marketing", state, STATES[level], why))
        current.update(state=STATES[level], since=now.isoformat(), reason=why)
    elif level is not None and level < LEVEL[state] and complete:
        lower, why, _ = severity(judged, thresholds, scale=HYSTERESIS)
        if lower is not None and lower < LEVEL[state]:
            transitions.append(Transition("marketing", state, STATES[lower], why))
            current.update(state=STATES[lower], since=now.isoformat(), reason=why)
    if current["tx_state"] == "healthy" and judged["sent"] >= thresholds.min_sent:
        bounce_rate = rates(judged)["bounce_rate"]
        if bounce_rate >= thresholds.transactional_bounce:
            why = f"bounce rate {bounce_rate:.2%} >= {thresholds.transactional_bounce:.2%} over {JUDGED_WINDOW}"
            transitions.append(Transition("transactional", "healthy", "paused", why))
            current["tx_state"] = "paused"
    return current, transitions


def resume(record: Mapping[str, Any], now: datetime, reason: str) -> tuple[dict, list[Transition]]:
    """Back to healthy; only events from now on are judged (the old window would pause it again)."""
    current = {**new_record(now), **record}
    transitions = []
    if current["state"] != "healthy":
        transitions.append(Transition("marketing", current["state"], "healthy", reason))
    if current["tx_state"] != "healthy":
        transitions.append(Transition("transactional", current["tx_state"], "healthy", reason))
    current.update(state="healthy", tx_state="healthy", since=now.isoformat(), reason=reason,
                   judged_from=now.isoformat())
    return current, transitions


# -- warm-up -----------------------------------------------------------------------------------


def parse_plan(text: str) -> list[int]:
    """`50,100,200,400` or `50*2,100*2,200`: daily caps, one per day, repeated with `*N`."""
    caps: list[int] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = re.match(r"^(\d+)(?:\s*\*\s*(\d+))?$", item)
        if not match or int(match.group(1)) < 1 or (match.group(2) is not None and int(match.group(2)) < 1):
            raise ReputationConfigError(f"warm-up plan {item!r}: expected a positive daily cap, optionally *DAYS")
        caps += [int(match.group(1))] * int(match.group(2) or 1)
    if not caps:
        raise ReputationConfigError("warm-up plan is empty: give daily caps like 50,100,200")
    return caps


def start_warmup(plan: list[int], now: datetime) -> dict:
    return {"plan": list(plan), "step": 0, "day": now.date().isoformat(), "clean": True}


def roll_warmup(warmup: Mapping[str, Any] | None, state: str, now: datetime) -> dict | None:
    """The plan after `now`: on a new day it moves one step on if the previous day stayed healthy."""
    if not warmup:
        return None
    current = dict(warmup)
    today = now.date().isoformat()
    if today > current["day"]:
        if current.get("clean", True):
            current["step"] = current["step"] + 1
        current.update(day=today, clean=True)
    if state != "healthy":
        current["clean"] = False
    return current


def warmup_cap(warmup: Mapping[str, Any] | None) -> int | None:
    """Today's cap, or None once the plan is complete (or there is none)."""
    if not warmup or warmup["step"] >= len(warmup["plan"]):
        return None
    return int(warmup["plan"][warmup["step"]])


# -- controls and admission --------------------------------------------------------------------


def control_of(record: Mapping[str, Any], thresholds: Thresholds, now: datetime) -> dict:
    """What every sender worker needs to know about one identity and provider."""
    state = record.get("state", "healthy")
    per_minute = {"throttled": thresholds.throttle_per_minute, "warning": thresholds.warning_per_minute}.get(state)
    resume_at = None
    if state == "paused" and thresholds.cooldown is not None:
        since = _parse(record.get("since")) or now
        resume_at = (since + thresholds.cooldown).isoformat()
    return {
        "state": state,
        "max_per_minute": per_minute,
        "daily_cap": warmup_cap(record.get("warmup")),
        "transactional_state": record.get("tx_state", "healthy"),
        "resume_at": resume_at,
        "recheck_seconds": thresholds.recheck_seconds,
        "on_pause": thresholds.on_pause,
        "updated_at": now.isoformat(),
    }


def admit_send(control: Mapping[str, Any] | None, transactional: bool, sent_in_last_minute: int,
               sent_today: int) -> tuple[str, str]:
    """("send" | "defer" | "skip", reason) for one intent under one control.

    Transactional mail is held only while its own state is paused (hard bounces). Marketing is held
    while paused (or dropped when the control says `on_pause: skip`), above the per-minute rate while
    warning or throttled, and above a warm-up plan's daily cap.
    """
    if not control:
        return "send", ""
    if transactional:
        if control.get("transactional_state") == "paused":
            return "defer", "reputation:paused"
        return "send", ""
    state = control.get("state", "healthy")
    if state == "paused":
        return ("skip" if control.get("on_pause") == "skip" else "defer"), "reputation:paused"
    per_minute = control.get("max_per_minute")
    if per_minute is not None and sent_in_last_minute >= per_minute:
        return "defer", f"reputation:{state}"
    cap = control.get("daily_cap")
    if cap is not None and sent_today >= cap:
        return "defer", "reputation:warmup"
    return "send", ""


def defer_until(control: Mapping[str, Any] | None, reason: str, now: datetime) -> datetime:
    """When a held intent is looked at again: next minute (rate), next UTC day (warm-up cap), or a recheck
    (`recheck_seconds`, or the end of a cool-down if sooner) while paused."""
    if reason == "reputation:warmup":
        return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), timezone.utc)
    if reason in ("reputation:throttled", "reputation:warning"):
        return now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    resume_at = _parse((control or {}).get("resume_at"))
    recheck = now + timedelta(seconds=(control or {}).get("recheck_seconds") or 60)
    return min(resume_at, recheck) if resume_at is not None and resume_at > now else recheck


def count_send(counter: Mapping[str, Any], now: datetime) -> dict:
    """The per-key send counter with one send at `now` (UTC day and minute)."""
    day, minute = now.date().isoformat(), now.strftime("%Y-%m-%dT%H:%M")
    today = counter.get("today", 0) if counter.get("day") == day else 0
    in_minute = counter.get("in_minute", 0) if counter.get("minute") == minute else 0
    return {"day": day, "today": today + 1, "minute": minute, "in_minute": in_minute + 1}


def sent_counts(counter: Mapping[str, Any], now: datetime) -> tuple[int, int]:
    """(sent in the current minute, sent today) as of `now`."""
    day, minute = now.date().isoformat(), now.strftime("%Y-%m-%dT%H:%M")
    return (counter.get("in_minute", 0) if counter.get("minute") == minute else 0,
            counter.get("today", 0) if counter.get("day") == day else 0)


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
