"""Journey tools: graphs (Mermaid, DOT, SVG), the simulator on a simulated clock, and the CLI."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from domain.events import EventEnvelope
from domain.journey_language import parse_journey, parse_journey_data
from domain.segments import parse_segment
from infra.cli import app
from infra.journey_graph import dot, mermaid, render
from infra.simulate import EventsUnreadable, diff_reports, read_jsonl, simulate

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=timezone.utc)


def ev(type_: str, event_id: str, minutes: float, subscriber: str, traits: dict[str, Any] | None = None, **props: Any) -> EventEnvelope:
    at = T0 + timedelta(minutes=minutes)
    return EventEnvelope(event_id=event_id, type=type_, subscriber_id=subscriber, occurred_at=at, received_at=at,
                         properties=props, context={"traits": traits} if traits else {})


def example(name: str):  # type: ignore[no-untyped-def]
    path = EXAMPLES / "journeys" / f"{name}.yaml"
    return parse_journey(path.read_text(), str(path))


def segments() -> list[Any]:
    return [parse_segment(p.read_text(), str(p)) for p in sorted((EXAMPLES / "segments").glob("*.yaml"))]


# --- graph ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.stem for p in (EXAMPLES / "journeys").glob("*.yaml")))
def test_mermaid_and_dot_draw_every_step_of_every_example(name: str) -> None:
    journey = example(name)
    text, graph = mermaid(journey), dot(journey)

    assert text.startswith("flowchart TD\n") and graph.startswith(f'digraph "{journey.id}"')
    for step_id in journey.plan.steps:
        assert f"{step_id}: " in text and f"{step_id}: " in graph
    assert "trigger -->" in text


def test_graph_shows_paths_holdout_exits_and_rules() -> None:
    journey = parse_journey_data({
        "id": "j", "trigger": {"event": "go", "key": "properties.cart_id"},
        "exit_when": [{"event": "order.placed", "match_key": True}], "goal": {"event": "order.placed", "within": "3d"},
        "steps": [{"split": [{"name": "a", "percent": 80, "steps": [{"exit": "enough"}]}, {"name": "h", "percent": 20, "holdout": True}]}],
    })
    text = mermaid(journey)

    assert "-->|a 80%|" in text and "-->|h 20% (holdout)| holdout" in text
    assert 'exit: enough' in text and "goal: order.placed within 3d" in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_svg_via_graphviz() -> None:
    assert b"<svg" in render(example("abandoned-cart"), "svg")


# --- simulate --------------------------------------------------------------------------------------


def test_simulation_of_abandoned_cart_on_a_simulated_clock() -> None:
    journey = example("abandoned-cart")
    shopper = {"email": "s@example.test"}
    events = [
        ev("identify", "i1", -60, "buyer", shopper), ev("identify", "i2", -60, "leaver", shopper),
        ev("identify", "i3", -60, "slow", shopper),
        ev("cart.updated", "c1", 0, "buyer", items=2, cart_id="b"),
        ev("order.placed", "o1", 0.1, "buyer", cart_id="b"),       # before the 20s wait: no reminder
        ev("cart.updated", "c2", 0, "leaver", items=1, cart_id="l"),  # never orders: reminder, then last chance
        ev("cart.updated", "c3", 0, "slow", items=1, cart_id="s"),
        ev("order.placed", "o3", 60, "slow", cart_id="s"),          # after the reminder: a conversion
    ]
    sim = simulate([journey], segments(), events, T0 - timedelta(hours=2), T0 + timedelta(days=2))
    report = sim.report(journey)

    assert report.entries == 3 and report.goals == 2
    assert report.sends_per_template == {"cart-last-chance": 1, "cart-reminder": 2}
    assert report.exits == {"completed": 1, "goal_reached": 2}
    assert report.people_per_step["reminder"] == 2 and report.still_waiting == 0
    reminder = next(i for i in sim.intents if i.subscriber_id == "leaver" and i.template_id == "cart-reminder")
    assert reminder.created_at == T0 + timedelta(seconds=20)  # the timer fired at its due time
    assert report.sends_per_day == {"2026-05-04": 2, "2026-05-05": 1}


def test_events_before_the_window_only_build_profiles() -> None:
    journey = example("welcome")
    events = [ev("identify", "i1", -10, "a", {"email": "a@example.test", "plan": "pro"}),
              ev("user.signed_up", "s0", -5, "early"), ev("user.signed_up", "s1", 0, "a")]

    report = simulate([journey], [], events, T0, T0 + timedelta(hours=1)).report(journey)

    assert report.entries == 1 and report.sends_per_template == {"welcome": 1, "welcome-pro-tips": 1}


def test_segment_trigger_in_simulation() -> None:
    journey = example("post-purchase-review")
    events = [ev("identify", "i", 0, "a", {"email": "a@example.test"}), ev("order.placed", "o1", 1, "a"),
              ev("order.placed", "o2", 2, "a")]

    sim = simulate([journey], segments(), events, T0, T0 + timedelta(hours=1))

    assert [(i.template_id, i.created_at) for i in sim.intents] == [("review-request", T0 + timedelta(minutes=1, seconds=5))]


def test_diff_against_the_live_version() -> None:
    live = parse_journey_data({"id": "j", "trigger": {"event": "go"}, "steps": [{"send": "a"}]})
    candidate = parse_journey_data({"id": "j", "trigger": {"event": "go"}, "steps": [
        {"branch": {"if": {"attribute": {"plan": "pro"}}, "then": [{"send": "a"}], "else": [{"exit": "not_pro"}]}}]}, version=2)
    events = [ev("go", f"g{n}", n, f"s{n}", {"email": "x@example.test", "plan": "pro" if n % 2 else "free"}) for n in range(10)]

    def report(j: Any) -> Any:
        return simulate([j], [], events, T0, T0 + timedelta(days=1)).report(j)

    diff = diff_reports(report(candidate), report(live))

    assert diff["sends"] == -5 and diff["exits"] == {"completed": -5, "not_pro": 5} and diff["entries"] == 0


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = ev("go", "e1", 0, "a").model_dump(mode="json")
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({"type": "go"}) + "\n")

    with pytest.raises(EventsUnreadable, match=r"events.jsonl:3: not an event"):
        list(read_jsonl(path))


# --- CLI --------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_validate_ok_and_errors(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["journeys", "validate", *(str(p) for p in sorted((EXAMPLES / "journeys").glob("*.yaml")))])
    (tmp_path / "journeys").mkdir()
    (tmp_path / "templates").mkdir()
    bad = tmp_path / "journeys" / "bad.yaml"
    bad.write_text("id: bad\ntrigger: {event: go}\nsteps:\n  - send: missing\n")
    failed = runner.invoke(app, ["journeys", "validate", str(bad)])

    assert ok.exit_code == 0, ok.output
    assert failed.exit_code == 1
    assert f"{bad}:4: steps[0].send: unknown template 'missing'" in failed.output.replace("\n", "")


def test_cli_graph_mermaid_and_svg(tmp_path: Path) -> None:
    text = runner.invoke(app, ["journeys", "graph", str(EXAMPLES / "journeys" / "welcome.yaml")])
    assert text.exit_code == 0 and text.output.startswith("flowchart TD")
    if shutil.which("dot"):
        out = tmp_path / "w.svg"
        image = runner.invoke(app, ["journeys", "graph", str(EXAMPLES / "journeys" / "welcome.yaml"), "--format", "svg", "-o", str(out)])
        assert image.exit_code == 0 and out.read_text().lstrip().startswith("<?xml")


def test_cli_simulate_from_jsonl(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    rows = [ev("identify", "i", 0, "a", {"email": "a@example.test"}), ev("user.signed_up", "s", 1, "a")]
    events.write_text("".join(json.dumps(e.model_dump(mode="json")) + "\n" for e in rows))

    result = runner.invoke(app, ["journeys", "simulate", str(EXAMPLES / "journeys" / "welcome.yaml"), "--from", "2026-05-04",
                                 "--to", "2026-05-05", "--events", str(events), "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["report"]
    assert report["entries"] == 1 and report["sends_per_template"] == {"getting-started": 1, "welcome": 1}


def test_cli_simulate_rejects_a_bad_window() -> None:
    result = runner.invoke(app, ["journeys", "simulate", str(EXAMPLES / "journeys" / "welcome.yaml"), "--from", "yesterday",
                                 "--to", "2026-05-05", "--events", "x.jsonl"])
    assert result.exit_code == 2 and "not an ISO 8601 time" in result.output
