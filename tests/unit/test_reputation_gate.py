"""The sender's reputation gate (processors/reputation.py) and the `tidings reputation` CLI's rendering
and input checks, without a broker."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone

from typer.testing import CliRunner

from domain import policy
from domain.events import ReputationSnapshot, SendIntent
from processors.reputation import Metrics, make_gate

NOW = datetime(2026, 11, 28, 10, 0, 30, tzinfo=timezone.utc)
DOMAIN = "news.example"


def intent(n: int, to: str, transactional: bool = False) -> SendIntent:
    return SendIntent(intent_id=f"i{n}", subscriber_id=f"s{n}", journey_id="j", journey_version=1, step_id="s",
                      template_id="t", to=to, trigger_event_id="e", created_at=NOW, transactional=transactional)


def gate_with(controls: dict, ready: bool = True):  # type: ignore[no-untyped-def]
    event = threading.Event()
    if ready:
        event.set()
    counters: defaultdict = defaultdict(dict)
    return make_gate(controls, counters, event), counters


def test_holds_everything_until_the_controls_are_loaded():
    gate, _ = gate_with({}, ready=False)
    decision = gate(intent(1, "a@example.org"), NOW, DOMAIN)
    assert isinstance(decision, policy.Defer) and decision.reason == "reputation:starting"
    assert decision.until == NOW + timedelta(seconds=2)


def test_a_provider_pause_holds_only_that_providers_marketing():
    gate, _ = gate_with({(DOMAIN, "gmail"): {"state": "paused", "recheck_seconds": 5}})
    held = gate(intent(1, "a@gmail.com"), NOW, DOMAIN)
    assert isinstance(held, policy.Defer) and held.reason == "reputation:paused" and held.until == NOW + timedelta(seconds=5)
    assert gate(intent(2, "a@outlook.com"), NOW, DOMAIN) is None
    assert gate(intent(3, "a@gmail.com", transactional=True), NOW, DOMAIN) is None
    assert gate(intent(4, "a@gmail.com"), NOW, "other.example") is None


def test_skip_when_the_control_says_so():
    gate, _ = gate_with({(DOMAIN, "all"): {"state": "paused", "on_pause": "skip"}})
    assert gate(intent(1, "a@gmail.com"), NOW, DOMAIN) == policy.Skip("reputation:paused")


def test_warmup_cap_counts_marketing_sends_only():
    gate, counters = gate_with({(DOMAIN, "all"): {"state": "healthy", "daily_cap": 2}})
    assert gate(intent(1, "a@gmail.com", transactional=True), NOW, DOMAIN) is None
    assert gate(intent(2, "b@gmail.com"), NOW, DOMAIN) is None
    assert gate(intent(3, "c@outlook.com"), NOW, DOMAIN) is None
    held = gate(intent(4, "d@yahoo.com"), NOW, DOMAIN)
    assert isinstance(held, policy.Defer) and held.reason == "reputation:warmup"
    assert held.until == datetime(2026, 11, 29, tzinfo=timezone.utc)
    assert counters[f"{DOMAIN}|all".encode()]["today"] == 2


def test_throttle_per_minute():
    gate, _ = gate_with({(DOMAIN, "gmail"): {"state": "throttled", "max_per_minute": 1}})
    assert gate(intent(1, "a@gmail.com"), NOW, DOMAIN) is None
    held = gate(intent(2, "b@gmail.com"), NOW, DOMAIN)
    assert isinstance(held, policy.Defer) and held.until == datetime(2026, 11, 28, 10, 1, tzinfo=timezone.utc)
    assert gate(intent(3, "c@gmail.com"), NOW + timedelta(seconds=30), DOMAIN) is None


def test_metrics_render_prometheus_text():
    metrics = Metrics()
    metrics.transitions[(DOMAIN, "gmail", "marketing", "healthy", "paused")] += 1
    snapshot = ReputationSnapshot(sending_domain=DOMAIN, provider="gmail", state="paused", score=12.5, updated_at=NOW)
    text = metrics.render({(DOMAIN, "gmail"): snapshot})
    assert ('tidings_reputation_transitions_total{sending_domain="news.example",provider="gmail",traffic="marketing",'
            'from="healthy",to="paused"} 1') in text
    assert 'tidings_reputation_score{sending_domain="news.example",provider="gmail"} 12.5' in text
    assert 'tidings_reputation_state{sending_domain="news.example",provider="gmail"} 3' in text


def test_cli_table_and_bad_input():
    from infra.cli import app
    from infra.cli_reputation import render_table

    snapshot = ReputationSnapshot(sending_domain=DOMAIN, provider="gmail", state="throttled", sent=10, updated_at=NOW,
                                  windows={"1h": {"sent": 10, "bounce_rate": 0.1, "complaint_rate": 0.0}},
                                  control={"max_per_minute": 60})
    table = render_table({(DOMAIN, "gmail"): snapshot})
    assert table.row_count == 1
    runner = CliRunner()
    bad_plan = runner.invoke(app, ["reputation", "warmup", DOMAIN, "--plan", "10,zero"])
    assert bad_plan.exit_code == 2 and "warm-up plan 'zero'" in bad_plan.output
    bad_identity = runner.invoke(app, ["reputation", "resume", " "])
    assert bad_identity.exit_code == 2 and "invalid command" in bad_identity.output
