"""The named analytics queries: one source for `docs/analytics.md`, the dashboard and the tests.

Each query is plain ClickHouse SQL over the `tidings` tables and views (migration 2), runs the same
on chDB and a ClickHouse server, and names its inputs as ClickHouse query parameters
(`{days:UInt32}`), so the SQL in the docs can be pasted into `clickhouse-client --param_days=30`.
`render()` substitutes them client side with quoted literals, because queries reach the embedded
engine as text through the worker's query port (`infra.analytics_client.run_query`).

Queries marked `dashboard=True` feed the dashboard panels; they read the daily rollups (small,
pre-aggregated) rather than the raw tables, so they stay fast at tens of millions of rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from clickhouse_connect.driver.binding import format_str

PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([A-Za-z0-9()]+)\}")
_UNSIGNED = ("UInt8", "UInt16", "UInt32", "UInt64")


class QueryParameterError(ValueError):
    """A named query was given an unknown parameter or a value its type cannot hold."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Any
    doc: str


@dataclass(frozen=True)
class NamedQuery:
    name: str
    title: str
    question: str
    sql: str
    params: tuple[Param, ...] = ()
    dashboard: bool = False
    notes: str = ""
    columns: tuple[str, ...] = field(default=())

    def render(self, **values: Any) -> str:
        """The SQL with every `{name:Type}` replaced by a literal: `values` over the defaults."""
        known = {param.name: param for param in self.params}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise QueryParameterError(
                f"query {self.name!r} has no parameter {', '.join(unknown)}; its parameters: {', '.join(known) or 'none'}"
            )
        merged = {name: values.get(name, param.default) for name, param in known.items()}

        def literal(match: re.Match[str]) -> str:
            name, type_ = match.group(1), match.group(2)
            if name not in known:
                raise QueryParameterError(f"query {self.name!r} uses {{{name}:{type_}}} but declares no such parameter")
            return _literal(self.name, name, type_, merged[name])

        return PARAMETER.sub(literal, self.sql)


def _literal(query: str, name: str, type_: str, value: Any) -> str:
    where = f"query {query!r} parameter {name!r}"
    if type_ in _UNSIGNED:
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                value = int(str(value), 10)
            except ValueError:
                raise QueryParameterError(f"{where} must be a whole number, got {value!r}") from None
        if value < 0:
            raise QueryParameterError(f"{where} must not be negative, got {value}")
        return str(value)
    if type_ == "String":
        if not isinstance(value, str):
            raise QueryParameterError(f"{where} must be a string, got {type(value).__name__}")
        return format_str(value)
    if type_ == "DateTime64":
        if value is None:
            return "now64(3)"
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise QueryParameterError(f"{where} must be an ISO 8601 time, got {value!r}") from None
        if not isinstance(value, datetime):
            raise QueryParameterError(f"{where} must be a datetime, got {type(value).__name__}")
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return f"toDateTime64('{value.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}', 3, 'UTC')"
    raise QueryParameterError(f"{where} has unsupported type {type_}")


DAYS = Param("days", "UInt32", 30, "how many days back from today to include")
GOAL = Param("goal_event", "String", "order.placed", "the event type that counts as a conversion")

_QUERIES = (
    NamedQuery(
        name="journey_funnel",
        title="Journey funnels",
        question="For each journey: how many subscribers entered, were sent a message, got it delivered, opened and clicked?",
        dashboard=True,
        params=(DAYS,),
        notes="Reads the daily rollups. `opened` and `clicked` count feedback events (a message opened twice counts twice); "
        "`step_funnel` counts unique messages.",
        sql="""\
SELECT
    journey_id,
    sumIf(n, stage = 'entered') AS entered,
    sumIf(n, stage = 'sent') AS sent,
    sumIf(n, stage = 'accepted') AS delivered,
    sumIf(n, stage = 'opened') AS opened,
    sumIf(n, stage = 'clicked') AS clicked
FROM
(
    SELECT journey_id, toString(kind) AS stage, sum(decisions) AS n
    FROM tidings.daily_journey_steps
    WHERE day >= today() - {days:UInt32}
    GROUP BY journey_id, stage
    UNION ALL
    SELECT journey_id, toString(kind) AS stage, sum(deliveries) AS n
    FROM tidings.daily_deliveries
    WHERE day >= today() - {days:UInt32} AND kind IN ('accepted', 'opened', 'clicked')
    GROUP BY journey_id, stage
)
WHERE journey_id != ''
GROUP BY journey_id
ORDER BY journey_id""",
    ),
    NamedQuery(
        name="step_funnel",
        title="Funnel per journey step",
        question="For each journey step that sends: how many messages were intended, delivered, opened and clicked (unique messages)?",
        params=(DAYS,),
        sql="""\
SELECT
    journey_id,
    step_id,
    count() AS intents,
    countIf(accepted_at IS NOT NULL) AS delivered,
    countIf(opened_at IS NOT NULL) AS opened,
    countIf(clicked_at IS NOT NULL) AS clicked,
    round(delivered / intents, 4) AS delivery_rate,
    round(if(delivered = 0, 0, clicked / delivered), 4) AS click_rate
FROM tidings.messages
WHERE intended_at >= today() - {days:UInt32}
GROUP BY journey_id, step_id
ORDER BY journey_id, step_id""",
    ),
    NamedQuery(
        name="sends_over_time",
        title="Sends and engagement over time",
        question="Per day: messages intended, delivered, opened, clicked, bounced, complained about and unsubscribed from.",
        dashboard=True,
        params=(DAYS,),
        sql="""\
SELECT
    day,
    sumIf(n, metric = 'intents') AS intents,
    sumIf(n, metric = 'accepted') AS delivered,
    sumIf(n, metric = 'opened') AS opened,
    sumIf(n, metric = 'clicked') AS clicked,
    sumIf(n, metric = 'bounced') AS bounced,
    sumIf(n, metric = 'complained') AS complained,
    sumIf(n, metric = 'unsubscribed') AS unsubscribed
FROM
(
    SELECT day, 'intents' AS metric, sum(intents) AS n
    FROM tidings.daily_send_intents
    WHERE day >= today() - {days:UInt32}
    GROUP BY day
    UNION ALL
    SELECT day, toString(kind) AS metric, sum(deliveries) AS n
    FROM tidings.daily_deliveries
    WHERE day >= today() - {days:UInt32}
    GROUP BY day, kind
)
GROUP BY day
ORDER BY day""",
    ),
    NamedQuery(
        name="deliverability_by_identity",
        title="Deliverability per sending identity and provider",
        question="Per sending domain and recipient (mailbox provider) domain: accepted, deferred, bounced, complaints and rates.",
        dashboard=True,
        params=(DAYS,),
        notes="Bounce rate = bounced / (accepted + bounced); complaint rate = complained / accepted. Gmail and Yahoo "
        "want the complaint rate below 0.001 and never above 0.003.",
        sql="""\
SELECT
    sending_domain,
    recipient_domain,
    sumIf(deliveries, kind = 'accepted') AS accepted,
    sumIf(deliveries, kind = 'deferred') AS deferred,
    sumIf(deliveries, kind = 'bounced') AS bounced,
    sumIf(deliveries, kind = 'complained') AS complained,
    round(bounced / greatest(accepted + bounced, 1), 4) AS bounce_rate,
    round(complained / greatest(accepted, 1), 4) AS complaint_rate
FROM tidings.daily_deliveries
WHERE day >= today() - {days:UInt32} AND sending_domain != ''
GROUP BY sending_domain, recipient_domain
HAVING accepted + deferred + bounced + complained > 0
ORDER BY sending_domain, recipient_domain""",
    ),
    NamedQuery(
        name="deliverability_by_provider_daily",
        title="Deliverability by provider over time",
        question="Per day and recipient (mailbox provider) domain: accepted, deferred, bounced, complaints and the bounce rate.",
        params=(DAYS,),
        sql="""\
SELECT
    day,
    recipient_domain,
    sumIf(deliveries, kind = 'accepted') AS accepted,
    sumIf(deliveries, kind = 'deferred') AS deferred,
    sumIf(deliveries, kind = 'bounced') AS bounced,
    sumIf(deliveries, kind = 'complained') AS complained,
    round(bounced / greatest(accepted + bounced, 1), 4) AS bounce_rate
FROM tidings.daily_deliveries
WHERE day >= today() - {days:UInt32} AND recipient_domain != ''
GROUP BY day, recipient_domain
ORDER BY day, recipient_domain""",
    ),
    NamedQuery(
        name="reputation_latest",
        title="Reputation per sending identity and provider",
        question="The latest reputation snapshot per sending domain and mailbox provider: counts in the window and state.",
        dashboard=True,
        sql="""\
SELECT
    sending_domain,
    provider,
    argMax(state, updated_at) AS state,
    argMax(sent, updated_at) AS sent,
    argMax(accepted, updated_at) AS accepted,
    argMax(bounced, updated_at) AS bounced,
    argMax(deferred, updated_at) AS deferred,
    argMax(complained, updated_at) AS complained,
    max(updated_at) AS snapshot_at
FROM tidings.reputation_snapshots
GROUP BY sending_domain, provider
ORDER BY sending_domain, provider""",
    ),
    NamedQuery(
        name="reputation_transitions",
        title="Reputation transition history",
        question="Every remediation state change per sending identity, provider and traffic class, with how long "
        "the key had been in the state it left.",
        params=(DAYS, Param("sending_domain", "String", "", "one sending identity, or '' for all")),
        notes="`seconds_in_from_state` is NULL for a key's first transition in the period (its start is not in the "
        "period, or it started healthy).",
        sql="""\
SELECT
    sending_domain,
    provider,
    traffic,
    occurred_at,
    from_state,
    to_state,
    reason,
    score,
    dateDiff('second', previous_at, occurred_at) AS seconds_in_from_state
FROM
(
    SELECT
        *,
        lagInFrame(toNullable(occurred_at), 1, NULL) OVER (
            PARTITION BY sending_domain, provider, traffic ORDER BY occurred_at, change_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS previous_at
    FROM tidings.reputation_changes FINAL
    WHERE occurred_at >= today() - {days:UInt32}
      AND ({sending_domain:String} = '' OR sending_domain = {sending_domain:String})
)
ORDER BY sending_domain, provider, traffic, occurred_at, change_id""",
    ),
    NamedQuery(
        name="conversion_attribution",
        title="Conversion attribution to the last message",
        question="Each goal event (e.g. order.placed) is credited to the last message delivered to the same subscriber "
        "within the window before it; goals with no such message are '(none)'.",
        params=(GOAL, Param("window_hours", "UInt32", 72, "how long a delivered message can claim a goal"), DAYS),
        sql="""\
WITH
    goals AS
    (
        SELECT event_id, subscriber_id, occurred_at
        FROM tidings.events
        WHERE type = {goal_event:String} AND occurred_at >= today() - {days:UInt32}
    ),
    touches AS
    (
        SELECT g.event_id AS goal_id, m.journey_id AS journey_id, m.template_id AS template_id, m.accepted_at AS accepted_at
        FROM goals AS g
        INNER JOIN tidings.messages AS m ON m.subscriber_id = g.subscriber_id
        WHERE m.accepted_at IS NOT NULL
          AND m.accepted_at <= g.occurred_at
          AND m.accepted_at > g.occurred_at - INTERVAL {window_hours:UInt32} HOUR
    ),
    last_touch AS
    (
        SELECT goal_id, argMax(journey_id, accepted_at) AS journey_id, argMax(template_id, accepted_at) AS template_id
        FROM touches
        GROUP BY goal_id
    )
SELECT
    if(l.goal_id = '', '(none)', toString(l.journey_id)) AS attributed_journey,
    if(l.goal_id = '', '(none)', toString(l.template_id)) AS attributed_template,
    count() AS conversions
FROM goals AS g
LEFT JOIN last_touch AS l ON l.goal_id = g.event_id
GROUP BY attributed_journey, attributed_template
ORDER BY attributed_journey, attributed_template""",
    ),
    NamedQuery(
        name="holdout_lift",
        title="Holdout lift",
        question="Of a journey's subscribers, those held out (decision kind 'holdout') against those entered: how many "
        "reached the goal within the window after the decision, and the lift.",
        params=(
            Param("journey_id", "String", "welcome", "the journey"),
            GOAL,
            Param("window_days", "UInt32", 7, "how long after entering (or being held out) a goal counts"),
        ),
        sql="""\
WITH
    decided AS
    (
        SELECT subscriber_id, if(kind = 'holdout', 'holdout', 'treatment') AS arm, min(occurred_at) AS decided_at
        FROM tidings.journey_decisions
        WHERE journey_id = {journey_id:String} AND kind IN ('entered', 'holdout')
        GROUP BY subscriber_id, arm
    ),
    converted AS
    (
        SELECT DISTINCT d.arm AS arm, d.subscriber_id AS subscriber_id
        FROM decided AS d
        INNER JOIN tidings.events AS e ON e.subscriber_id = d.subscriber_id
        WHERE e.type = {goal_event:String}
          AND e.occurred_at >= d.decided_at
          AND e.occurred_at < d.decided_at + INTERVAL {window_days:UInt32} DAY
    ),
    arms AS
    (
        SELECT d.arm AS arm, count() AS subscribers, countIf(c.subscriber_id != '') AS converted
        FROM decided AS d
        LEFT JOIN converted AS c ON c.subscriber_id = d.subscriber_id AND c.arm = d.arm
        GROUP BY d.arm
    )
SELECT
    sumIf(subscribers, arm = 'treatment') AS treatment_subscribers,
    sumIf(converted, arm = 'treatment') AS treatment_converted,
    round(treatment_converted / treatment_subscribers, 4) AS treatment_rate,
    sumIf(subscribers, arm = 'holdout') AS holdout_subscribers,
    sumIf(converted, arm = 'holdout') AS holdout_converted,
    round(holdout_converted / holdout_subscribers, 4) AS holdout_rate,
    round(treatment_rate - holdout_rate, 4) AS absolute_lift,
    round((treatment_rate - holdout_rate) / holdout_rate, 4) AS relative_lift
FROM arms""",
    ),
    NamedQuery(
        name="template_ab",
        title="Template A/B results with confidence",
        question="Two templates sent by one journey step: delivered, clicked, click rate, and a two-proportion z-test "
        "(z and the two-sided confidence that the rates differ).",
        params=(Param("journey_id", "String", "welcome", "the journey"), Param("step_id", "String", "send-welcome", "the step")),
        notes="z = (p_b - p_a) / sqrt(p (1 - p) (1/n_a + 1/n_b)) with p the pooled rate; confidence = erf(|z| / sqrt 2), "
        "so 0.95 means |z| = 1.96. Templates are paired in name order: a is the smaller id.",
        sql="""\
WITH per_template AS
(
    SELECT
        template_id,
        countIf(accepted_at IS NOT NULL) AS delivered,
        countIf(accepted_at IS NOT NULL AND clicked_at IS NOT NULL) AS clicked
    FROM tidings.messages
    WHERE journey_id = {journey_id:String} AND step_id = {step_id:String}
    GROUP BY template_id
)
SELECT
    a.template_id AS template_a,
    a.delivered AS delivered_a,
    a.clicked AS clicked_a,
    round(a.clicked / a.delivered, 4) AS rate_a,
    b.template_id AS template_b,
    b.delivered AS delivered_b,
    b.clicked AS clicked_b,
    round(b.clicked / b.delivered, 4) AS rate_b,
    (a.clicked + b.clicked) / (a.delivered + b.delivered) AS pooled,
    round((b.clicked / b.delivered - a.clicked / a.delivered)
        / sqrt(pooled * (1 - pooled) * (1 / a.delivered + 1 / b.delivered)), 3) AS z,
    round(erf(abs(z) / sqrt(2)), 4) AS confidence
FROM per_template AS a
CROSS JOIN per_template AS b
WHERE a.template_id < b.template_id
ORDER BY template_a, template_b""",
    ),
    NamedQuery(
        name="segment_members_as_of",
        title="Members of a segment as of a time",
        question="Who was in a segment at a given moment: each subscriber's latest change at or before it is 'entered'.",
        params=(
            Param("segment_id", "String", "vip", "the segment"),
            Param("as_of", "DateTime64", None, "the moment (UTC); default now"),
        ),
        sql="""\
SELECT subscriber_id, entered_at
FROM
(
    SELECT
        subscriber_id,
        argMax(change, occurred_at) AS last_change,
        maxIf(occurred_at, change = 'entered') AS entered_at
    FROM tidings.segment_changes
    WHERE segment_id = {segment_id:String} AND occurred_at <= {as_of:DateTime64}
    GROUP BY subscriber_id
)
WHERE last_change = 'entered'
ORDER BY subscriber_id""",
    ),
    NamedQuery(
        name="why_received",
        title="Why a subscriber received a message",
        question="For each message to one subscriber: the journey, step and template, the event that triggered it and "
        "the journey's decisions for that subscriber, in time order.",
        params=(Param("subscriber_id", "String", "", "the subscriber"),),
        sql="""\
SELECT
    m.intent_id AS intent_id,
    m.journey_id AS journey_id,
    m.journey_version AS journey_version,
    m.step_id AS step_id,
    m.template_id AS template_id,
    m.status AS status,
    m.accepted_at AS accepted_at,
    e.type AS trigger_event_type,
    e.occurred_at AS trigger_occurred_at,
    d.decisions AS decisions
FROM tidings.messages AS m
LEFT JOIN
(
    SELECT event_id, type, occurred_at
    FROM tidings.events
    WHERE subscriber_id = {subscriber_id:String}
) AS e ON e.event_id = m.trigger_event_id
LEFT JOIN
(
    SELECT
        journey_id,
        arraySort(groupArray(concat(formatDateTime(occurred_at, '%F %T'), ' ', kind,
            if(step_id = '', '', concat(' ', step_id)), if(reason = '', '', concat(' (', reason, ')'))))) AS decisions
    FROM tidings.journey_decisions
    WHERE subscriber_id = {subscriber_id:String}
    GROUP BY journey_id
) AS d ON d.journey_id = m.journey_id
WHERE m.subscriber_id = {subscriber_id:String}
ORDER BY m.intended_at, m.intent_id""",
    ),
    NamedQuery(
        name="message_lifecycle",
        title="A subscriber's messages and their lifecycle",
        question="Every message intended for one subscriber with the time of each step of its life.",
        params=(Param("subscriber_id", "String", "", "the subscriber"),),
        sql="""\
SELECT
    intent_id,
    journey_id,
    template_id,
    status,
    attempts,
    intended_at,
    rendered_at,
    deferred_at,
    accepted_at,
    bounced_at,
    opened_at,
    clicked_at,
    complained_at,
    unsubscribed_at
FROM tidings.messages
WHERE subscriber_id = {subscriber_id:String}
ORDER BY intended_at, intent_id""",
    ),
)

QUERIES: dict[str, NamedQuery] = {query.name: query for query in _QUERIES}
DASHBOARD_QUERIES: tuple[str, ...] = tuple(query.name for query in _QUERIES if query.dashboard)


def named_query(name: str) -> NamedQuery:
    try:
        return QUERIES[name]
    except KeyError:
        raise QueryParameterError(f"unknown query {name!r}; known queries: {', '.join(QUERIES)}") from None


def render(name: str, **values: Any) -> str:
    """The SQL of query `name` with its parameters filled in (defaults for those not given)."""
    return named_query(name).render(**values)
