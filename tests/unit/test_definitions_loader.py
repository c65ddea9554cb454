"""Loading definition directories: everything parsed, journeys checked against templates, all errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.definitions_loader import DefinitionsInvalid, load_definitions, load_paths, validate_paths

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SEGMENT = "id: buyers\nrule:\n  performed: {event: order.placed}\n"
JOURNEY = "id: welcome\ntrigger: {event: user.signed_up}\nsteps:\n  - send: welcome\n"
TEMPLATE = "id: welcome\nsubject: Hello {{ subscriber.first_name }}\nhtml: <p>Hi</p>\n"


def write(root: Path, relative: str, text: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture
def definitions_dir(tmp_path: Path) -> Path:
    write(tmp_path, "segments/buyers.yaml", SEGMENT)
    write(tmp_path, "segments/engaged.yml", "id: engaged\nrule:\n  performed: {event: product.viewed, at_least: 3}\n")
    write(tmp_path, "journeys/welcome.yaml", JOURNEY)
    write(tmp_path, "templates/welcome.yaml", TEMPLATE)
    write(tmp_path, "segments/README.md", "not a definition")
    return tmp_path


def test_loads_every_kind(definitions_dir: Path) -> None:
    definitions = load_definitions(definitions_dir)

    assert [s.id for s in definitions.segments] == ["buyers", "engaged"]
    assert [j.id for j in definitions.journeys] == ["welcome"]
    assert [t.id for t in definitions.templates] == ["welcome"]


def test_missing_kind_folders_are_empty(tmp_path: Path) -> None:
    write(tmp_path, "segments/buyers.yaml", SEGMENT)

    definitions = load_definitions(tmp_path)

    assert [s.id for s in definitions.segments] == ["buyers"]
    assert definitions.journeys == [] and definitions.templates == []


def test_collects_every_error_with_file_line_and_field(definitions_dir: Path) -> None:
    bad_segment = write(definitions_dir, "segments/bad.yaml", "id: bad\nrule:\n  performed: {event: a, at_leest: 2}\n")
    bad_journey = write(
        definitions_dir, "journeys/bad.yaml", "id: bad\ntrigger: {event: go}\nsteps:\n  - send: welcome\n  - send: nope\n"
    )
    bad_template = write(definitions_dir, "templates/bad.yaml", "id: bad\nhtml: <p>x</p>\n")

    with pytest.raises(DefinitionsInvalid) as caught:
        load_definitions(definitions_dir)

    located = {(e.filename, e.line, e.field) for e in caught.value.errors}
    assert located == {
        (str(bad_segment), 3, "rule.performed.at_leest"),
        (str(bad_journey), 5, "steps[1].send"),
        (str(bad_template), 1, "subject"),
    }
    text = str(caught.value)
    assert f"{bad_journey}:5: steps[1].send: unknown template 'nope'" in text
    assert len(text.splitlines()) == 3


def test_duplicate_ids_are_an_error_at_the_second_file(definitions_dir: Path) -> None:
    copy = write(definitions_dir, "segments/more-buyers.yaml", "# same id\n" + SEGMENT)

    with pytest.raises(DefinitionsInvalid) as caught:
        load_definitions(definitions_dir)

    [error] = caught.value.errors
    assert (error.filename, error.line, error.field) == (str(copy), 2, "id")
    assert "already used by" in error.message and "buyers.yaml" in error.message


def test_a_broken_template_does_not_also_fail_its_journeys(definitions_dir: Path) -> None:
    template = write(definitions_dir, "templates/welcome.yaml", "id: welcome\nsubject: Hi {{ oops\nhtml: <p>x</p>\n")

    with pytest.raises(DefinitionsInvalid) as caught:
        load_definitions(definitions_dir)

    assert [e.filename for e in caught.value.errors] == [str(template)]


def test_unreadable_file_is_an_error(definitions_dir: Path) -> None:
    binary = write(definitions_dir, "segments/binary.yaml", b"\xff\xfe\x00id")

    with pytest.raises(DefinitionsInvalid) as caught:
        load_definitions(definitions_dir)

    [error] = caught.value.errors
    assert error.filename == str(binary) and "cannot read" in error.message


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DefinitionsInvalid) as caught:
        load_definitions(tmp_path / "nowhere")

    assert "no such directory" in str(caught.value)


# --- validate_paths --------------------------------------------------------------------------


def test_validate_a_valid_root_returns_no_errors(definitions_dir: Path) -> None:
    assert validate_paths([definitions_dir]) == []


def test_validate_one_journey_checks_templates_beside_it(definitions_dir: Path) -> None:
    journey = definitions_dir / "journeys" / "welcome.yaml"
    assert validate_paths([journey]) == []

    unknown = write(definitions_dir, "journeys/other.yaml", JOURNEY.replace("id: welcome", "id: other").replace("send: welcome", "send: missing"))
    [error] = validate_paths([unknown])
    assert (error.filename, error.line, error.field) == (str(unknown), 4, "steps[0].send")


def test_validate_reports_missing_and_unrecognisable_paths(tmp_path: Path) -> None:
    mystery = write(tmp_path, "misc/mystery.yaml", "id: what\ncolour: blue\n")

    errors = validate_paths([tmp_path / "absent.yaml", mystery])

    assert [(e.filename, e.message) for e in errors] == [
        (str(tmp_path / "absent.yaml"), "no such file or directory"),
        (str(mystery), "cannot tell a segment from a journey or template: put it under segments/, journeys/ or templates/"),
    ]


def test_validate_tells_kinds_apart_by_their_keys_outside_kind_folders(tmp_path: Path) -> None:
    write(tmp_path, "misc/buyers.yaml", SEGMENT)
    write(tmp_path, "misc/welcome-template.yaml", TEMPLATE)
    write(tmp_path, "misc/welcome.yaml", JOURNEY)
    bad = write(tmp_path, "misc/bad-segment.yaml", "id: bad\nrule:\n  all: []\n")

    [error] = validate_paths([tmp_path / "misc"])

    assert (error.filename, error.line, error.field) == (str(bad), 3, "rule.all")


def test_validate_the_same_file_twice_is_not_a_duplicate(definitions_dir: Path) -> None:
    path = definitions_dir / "segments" / "buyers.yaml"

    assert validate_paths([path, path, definitions_dir]) == []


def test_load_paths_returns_what_it_validated(definitions_dir: Path) -> None:
    definitions = load_paths([definitions_dir / "journeys" / "welcome.yaml", definitions_dir / "segments"])

    assert [j.id for j in definitions.journeys] == ["welcome"]
    assert [s.id for s in definitions.segments] == ["buyers", "engaged"]
    assert definitions.templates == []  # beside the journey, used for checking only

    write(definitions_dir, "segments/bad.yaml", "id: bad\n")
    with pytest.raises(DefinitionsInvalid) as caught:
        load_paths([definitions_dir])
    assert [e.field for e in caught.value.errors] == ["rule"]


def test_examples_are_valid() -> None:
    if not (EXAMPLES / "templates" / "welcome.yaml").exists():
        pytest.skip("example templates are written by the templates work, not here")

    definitions = load_definitions(EXAMPLES)

    assert {"engaged", "buyers"} <= {s.id for s in definitions.segments}
    assert {"welcome", "first-order"} <= {j.id for j in definitions.journeys}
    assert validate_paths([EXAMPLES]) == []
