"""Drawings of a journey: Mermaid text (renders in GitHub, GitLab and most Markdown viewers) and
Graphviz DOT, rendered to SVG or PNG by the `dot` program when it is installed."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from domain.journey_language import (
    BranchStep,
    EventTrigger,
    ExitStep,
    JourneyDefinition,
    SendStep,
    SetStep,
    SplitStep,
    Step,
    WaitForStep,
    WaitStep,
    WaitUntilDateStep,
    WaitUntilTimeStep,
    WebhookStep,
    cond_text,
    duration_text,
    step_paths,
    where_text,
)

END = "done"


class GraphvizMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Node:
    id: str
    label: str
    shape: str  # "start", "step", "decision", "wait", "end"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""


def graph(journey: JourneyDefinition) -> tuple[list[Node], list[Edge]]:
    """The journey as nodes and edges: trigger, every step, the end, and exits by reason."""
    plan = journey.plan
    nodes = [Node("trigger", _trigger_label(journey), "start")]
    edges = [Edge("trigger", _node_id(plan.first) if plan.first else END)]
    exits: dict[str, str] = {}
    for step_id, step in plan.steps.items():
        nodes.append(Node(_node_id(step_id), f"{step_id}: {step_label(step)}", _shape(step)))
        if isinstance(step, ExitStep):
            target = exits.setdefault(step.reason, f"exit_{len(exits) + 1}")
            edges.append(Edge(_node_id(step_id), target))
            continue
        paths = step_paths(step)
        if paths:
            for name, _ in paths:
                start = plan.path_start[(step_id, name)]
                label = name.replace("variant:", "")
                if isinstance(step, SplitStep):
                    variant = next(v for v in step.variants if f"variant:{v.name}" == name)
                    label = f"{variant.name} {variant.percent:g}%"
                    if variant.holdout and variant.name != "holdout":
                        label += " (holdout)"
                    if variant.holdout:
                        edges.append(Edge(_node_id(step_id), "holdout", label))
                        continue
                edges.append(Edge(_node_id(step_id), _node_id(start) if start else END, label))
        else:
            follow = plan.next[step_id]
            edges.append(Edge(_node_id(step_id), _node_id(follow) if follow else END))
    nodes.append(Node(END, "done", "end"))
    if any(e.target == "holdout" for e in edges):
        nodes.append(Node("holdout", "holdout: tracked, sent nothing", "end"))
    for reason, node_id in exits.items():
        nodes.append(Node(node_id, f"exit: {reason}", "end"))
    rules = _rules_label(journey)
    if rules:
        nodes.append(Node("rules", rules, "note"))
    return nodes, edges


def step_label(step: Step) -> str:
    if isinstance(step, SendStep):
        return f"send {step.send}"
    if isinstance(step, WaitStep):
        return f"wait {duration_text(step.seconds)}"
    if isinstance(step, WaitUntilTimeStep):
        days = "every day" if len(step.weekdays) == 7 else ",".join(step.weekdays)
        return f"wait until {step.time} local, {days}"
    if isinstance(step, WaitUntilDateStep):
        offset = f" {'+' if step.offset_seconds >= 0 else ''}{duration_text(step.offset_seconds)}" if step.offset_seconds else ""
        return f"wait until {step.attribute}{offset}"
    if isinstance(step, WaitForStep):
        what = f"event {step.event}" if step.event else f"segment {step.segment} {step.change}"
        return f"wait for {what}, at most {duration_text(step.timeout_seconds)}"
    if isinstance(step, BranchStep):
        return f"if {cond_text(step.when)}"
    if isinstance(step, SplitStep):
        return "split " + " / ".join(f"{v.name} {v.percent:g}%" for v in step.variants)
    if isinstance(step, SetStep):
        return "set " + ", ".join(f"{k}={v}" for k, v in step.values.items())
    if isinstance(step, WebhookStep):
        return f"webhook {step.method} {step.url}"
    return f"exit ({step.reason})"


def _trigger_label(journey: JourneyDefinition) -> str:
    trigger = journey.trigger
    if isinstance(trigger, EventTrigger):
        label = f"when {trigger.event}"
        if trigger.where:
            label += f" where {where_text(trigger.where)}"
        if trigger.key:
            label += f", one per {trigger.key}"
    else:
        label = f"when {trigger.change} segment {trigger.segment}"
    policy = {"never": "once", "always": "every time"}.get(journey.re_entry, f"again after {duration_text(journey.re_entry_after_seconds)}")
    return f"{journey.id} v{journey.version}: {label} ({policy})"


def _rules_label(journey: JourneyDefinition) -> str:
    parts = []
    for rule in journey.exit_when:
        if rule.event:
            parts.append(f"exit when {rule.event}" + (" for the same key" if rule.match_key else ""))
        else:
            parts.append(f"exit when leaving {rule.left_segment}")
    if journey.goal:
        parts.append(f"goal: {journey.goal.event} within {duration_text(journey.goal.within_seconds)}")
    return "; ".join(parts)


def _shape(step: Step) -> str:
    if isinstance(step, (BranchStep, SplitStep)):
        return "decision"
    if isinstance(step, (WaitStep, WaitUntilTimeStep, WaitUntilDateStep, WaitForStep)):
        return "wait"
    return "step"


def _node_id(step_id: str | None) -> str:
    return END if step_id is None else "n_" + "".join(c if c.isalnum() else "_" for c in step_id)


# --- Mermaid -------------------------------------------------------------------------------------


def mermaid(journey: JourneyDefinition) -> str:
    nodes, edges = graph(journey)
    shapes = {"start": ('(["', '"])'), "step": ('["', '"]'), "decision": ('{"', '"}'), "wait": ('[/"', '"/]'),
              "end": ('(("', '"))'), "note": ('>"', '"]')}
    lines = ["flowchart TD"]
    for node in nodes:
        opening, closing = shapes[node.shape]
        lines.append(f"    {node.id}{opening}{_mermaid_text(node.label)}{closing}")
    for edge in edges:
        arrow = f"-->|{_mermaid_text(edge.label)}|" if edge.label else "-->"
        lines.append(f"    {edge.source} {arrow} {edge.target}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;").replace("<", "#lt;").replace(">", "#gt;")


# --- Graphviz --------------------------------------------------------------------------------------


def dot(journey: JourneyDefinition) -> str:
    nodes, edges = graph(journey)
    shapes = {"start": "oval", "step": "box", "decision": "diamond", "wait": "parallelogram",
              "end": 'box, style="rounded,bold"', "note": "note"}
    lines = [f'digraph "{journey.id}" {{',
             '  rankdir=TB; node [fontname="Helvetica", fontsize=11]; edge [fontname="Helvetica", fontsize=10];']
    for node in nodes:
        lines.append(f'  {node.id} [shape={shapes[node.shape]}, label="{_dot_text(node.label)}"];')
    for edge in edges:
        label = f' [label="{_dot_text(edge.label)}"]' if edge.label else ""
        lines.append(f"  {edge.source} -> {edge.target}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render(journey: JourneyDefinition, fmt: str) -> bytes:
    """SVG or PNG bytes drawn by Graphviz `dot`; GraphvizMissing when it is not installed."""
    if fmt not in ("svg", "png"):
        raise ValueError(f"unknown image format {fmt!r}; use svg or png")
    program = shutil.which("dot")
    if program is None:
        raise GraphvizMissing("Graphviz `dot` is not installed (apt-get install graphviz); use --format mermaid")
    result = subprocess.run([program, f"-T{fmt}"], input=dot(journey).encode(), capture_output=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"dot failed: {result.stderr.decode(errors='replace')[:500]}")
    return result.stdout
