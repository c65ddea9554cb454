"""`tidings segments preview` over a JSONL file; bad files and bad records are named."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from infra.cli import app

runner = CliRunner()


def flat(output: str) -> str:
    return " ".join(output.split())  # rich wraps long lines


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def events_file(root: Path) -> Path:
    lines = []
    for i in range(30):
        kind = "order.placed" if i % 3 == 0 else "page.viewed"
        lines.append({"event_id": f"e{i}", "type": kind, "subscriber_id": f"u{i % 10}", "occurred_at": f"2026-03-{1 + i % 20:02d}T00:00:00Z"})
    lines.append({"delivery_id": "d1", "intent_id": "i1", "subscriber_id": "u1", "kind": "accepted", "occurred_at": "2026-03-02T00:00:00Z"})
    return write(root, "events.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")


def test_preview_counts_members_and_shows_a_sample(tmp_path: Path) -> None:
    write(tmp_path, "defs/segments/buyers.yaml", "id: buyers\nrule:\n  performed: {event: order.placed}\n")
    new = write(tmp_path, "recent-buyers.yaml",
                "id: recent-buyers\nrule:\n  all:\n    - segment: buyers\n    - performed: {event: order.placed, within: 5d}\n")

    result = runner.invoke(app, ["segments", "preview", str(new), "--events", str(events_file(tmp_path)),
                                 "--definitions", str(tmp_path / "defs"), "--at", "2026-03-21T00:00:00Z", "--sample", "2"])

    assert result.exit_code == 0, result.output
    # Orders in (03-16, 03-21]: u8's on 03-19. u5's on 03-16 00:00 is exactly 5 days old: outside.
    assert "recent-buyers: 1 of 10 subscribers" in flat(result.output)
    assert "u8" in result.output and "u5" not in result.output


def test_preview_names_an_unknown_reference(tmp_path: Path) -> None:
    new = write(tmp_path, "s.yaml", "id: s\nrule:\n  segment: nowhere\n")
    (tmp_path / "defs").mkdir()

    result = runner.invoke(app, ["segments", "preview", str(new), "--events", str(events_file(tmp_path)), "--definitions", str(tmp_path / "defs")])

    assert result.exit_code == 1
    assert "unknown segment 'nowhere'" in flat(result.output) and "s.yaml:3" in flat(result.output)


def test_preview_names_a_bad_record_line(tmp_path: Path) -> None:
    new = write(tmp_path, "s.yaml", "id: s\nrule:\n  performed: {event: a}\n")
    bad = write(tmp_path, "bad.jsonl", '{"event_id": "e1", "type": "a", "subscriber_id": "u", "occurred_at": "2026-03-01T00:00:00Z"}\n{"type": 5}\n')
    (tmp_path / "defs").mkdir()

    result = runner.invoke(app, ["segments", "preview", str(new), "--events", str(bad), "--definitions", str(tmp_path / "defs")])

    assert result.exit_code == 1
    assert "bad.jsonl:2: not an event, delivery or consent record" in flat(result.output)


def test_preview_names_a_bad_segment_file(tmp_path: Path) -> None:
    new = write(tmp_path, "s.yaml", "id: s\nrule:\n  performed: {event: a, within: forever}\n")
    (tmp_path / "defs").mkdir()

    result = runner.invoke(app, ["segments", "preview", str(new), "--events", str(events_file(tmp_path)), "--definitions", str(tmp_path / "defs")])

    assert result.exit_code == 1
    assert "s.yaml:3: rule.performed.within" in flat(result.output)
