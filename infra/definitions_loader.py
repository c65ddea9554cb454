"""Read segment, journey and template YAML from disk and validate them together.

A definitions directory holds `segments/`, `journeys/` and `templates/` (`*.yaml` or `*.yml`).
Journeys are checked against the template ids found beside them. Every file is read and every
error collected, so one run tells the marketer everything that is wrong, not only the first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog
import yaml

from domain.journeys import JourneyDefinition, parse_journey
from domain.segments import SegmentDefinition, parse_segment, segment_reference_errors
from domain.yaml_source import DefinitionError, load_yaml

log = structlog.get_logger(__name__)

Kind = Literal["segment", "journey", "template"]
KIND_DIRECTORIES: dict[str, Kind] = {"segments": "segment", "journeys": "journey", "templates": "template"}
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Definitions:
    segments: list[SegmentDefinition] = field(default_factory=list)
    journeys: list[JourneyDefinition] = field(default_factory=list)
    templates: list[Any] = field(default_factory=list)  # domain.templates.TemplateDefinition


class DefinitionsInvalid(Exception):
    """One or more definition files are wrong; `errors` lists every problem found."""

    def __init__(self, errors: list[DefinitionError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(error) for error in errors))


def load_definitions(directory: Path) -> Definitions:
    """Every definition under `directory`; raises DefinitionsInvalid listing all errors."""
    if not directory.is_dir():
        raise DefinitionsInvalid([DefinitionError(str(directory), None, "", "no such directory")])
    definitions, errors = _load(_files_of_root(directory), extra_template_dirs=())
    if errors:
        raise DefinitionsInvalid(errors)
    log.info(
        "definitions.loaded",
        directory=str(directory),
        segments=len(definitions.segments),
        journeys=len(definitions.journeys),
        templates=len(definitions.templates),
    )
    return definitions


def load_paths(paths: list[Path]) -> Definitions:
    """Every definition in the given files and directories; raises DefinitionsInvalid listing all errors.

    A directory with `segments/`, `journeys/` or `templates/` inside is read as a definitions root;
    any other directory contributes its YAML files. A file's kind comes from its folder's name,
    else from its keys. Journeys are checked against the templates given and those in a
    `templates/` folder beside their `journeys/` folder.
    """
    files, errors = _collect(paths)
    template_dirs = {
        file.parent.parent / "templates"
        for kind, file in files
        if kind == "journey" and file.parent.name == "journeys"
    }
    definitions, load_errors = _load(files, extra_template_dirs=sorted(template_dirs))
    errors += load_errors
    if errors:
        raise DefinitionsInvalid(errors)
    return definitions


def validate_paths(paths: list[Path]) -> list[DefinitionError]:
    """Errors in the given files and directories (empty when all are valid), for `tidings validate`."""
    try:
        load_paths(paths)
    except DefinitionsInvalid as exc:
        return exc.errors
    return []


def _collect(paths: list[Path]) -> tuple[list[tuple[Kind, Path]], list[DefinitionError]]:
    files: list[tuple[Kind, Path]] = []
    errors: list[DefinitionError] = []
    for path in paths:
        if not path.exists():
            errors.append(DefinitionError(str(path), None, "", "no such file or directory"))
        elif path.is_dir() and any((path / name).is_dir() for name in KIND_DIRECTORIES):
            files.extend(_files_of_root(path))
        elif path.is_dir():
            for file in _yaml_files(path):
                _add_file(file, files, errors)
        else:
            _add_file(path, files, errors)
    return _unique(files), errors


def _files_of_root(directory: Path) -> list[tuple[Kind, Path]]:
    return [
        (kind, file)
        for name, kind in KIND_DIRECTORIES.items()
        for file in _yaml_files(directory / name)
    ]


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in YAML_SUFFIXES)


def _add_file(path: Path, files: list[tuple[Kind, Path]], errors: list[DefinitionError]) -> None:
    kind = KIND_DIRECTORIES.get(path.parent.name) or _sniff_kind(path)
    if kind is None:
        errors.append(
            DefinitionError(
                str(path), None, "", "cannot tell a segment from a journey or template: "
                "put it under segments/, journeys/ or templates/"
            )
        )
    else:
        files.append((kind, path))


def _sniff_kind(path: Path) -> Kind | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return None
    if "rule" in data:
        return "segment"
    if "trigger" in data or "steps" in data:
        return "journey"
    if {"subject", "html", "text"} & data.keys():
        return "template"
    return None


def _unique(files: list[tuple[Kind, Path]]) -> list[tuple[Kind, Path]]:
    seen: set[Path] = set()
    out = []
    for kind, path in files:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            out.append((kind, path))
    return out


def _load(
    files: list[tuple[Kind, Path]], extra_template_dirs: Iterable[Path]
) -> tuple[Definitions, list[DefinitionError]]:
    errors: list[DefinitionError] = []
    texts: dict[Path, str] = {}
    for _, path in files:
        try:
            texts[path] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(DefinitionError(str(path), None, "", f"cannot read: {exc}"))
    of_kind = {kind: [p for k, p in files if k == kind and p in texts] for kind in KIND_DIRECTORIES.values()}

    templates = _parse_all(of_kind["template"], texts, _template_parser(), errors) if of_kind["template"] else []
    segments = _parse_all(of_kind["segment"], texts, parse_segment, errors)
    errors += segment_reference_errors({str(p): texts[p] for p in of_kind["segment"]})
    known = {t.id for t in templates} | _ids_of_broken_templates(of_kind["template"], texts, templates)
    known |= _template_ids_in(extra_template_dirs, exclude=set(of_kind["template"]))
    journeys = _parse_all(
        of_kind["journey"], texts, lambda text, name: parse_journey(text, name, known_templates=known), errors
    )
    return Definitions(segments=segments, journeys=journeys, templates=templates), errors


def _parse_all(paths: list[Path], texts: dict[Path, str], parse: Any, errors: list[DefinitionError]) -> list[Any]:
    parsed: list[Any] = []
    first_file_of: dict[str, Path] = {}
    for path in paths:
        try:
            definition = parse(texts[path], str(path))
        except DefinitionError as exc:
            errors.append(exc)
            continue
        if definition.id in first_file_of:
            line = load_yaml(texts[path], str(path)).line_of(("id",))
            errors.append(
                DefinitionError(str(path), line, "id", f"id '{definition.id}' is already used by {first_file_of[definition.id]}")
            )
            continue
        first_file_of[definition.id] = path
        parsed.append(definition)
    return parsed


def _template_parser() -> Any:
    # Imported when needed so segment and journey loading does not depend on template rendering.
    from domain.templates import parse_template

    return parse_template


def _ids_of_broken_templates(paths: list[Path], texts: dict[Path, str], parsed: list[Any]) -> set[str]:
    """Ids of template files that failed to parse, so their journeys are not reported as well."""
    good = {t.id for t in parsed}
    ids = set()
    for path in paths:
        raw_id = _raw_id(texts[path])
        if raw_id and raw_id not in good:
            ids.add(raw_id)
    return ids


def _template_ids_in(directories: Iterable[Path], exclude: set[Path]) -> set[str]:
    """Template ids beside the journeys being validated, read without validating the templates."""
    ids = set()
    for directory in directories:
        for path in _yaml_files(directory):
            if path in exclude:
                continue
            try:
                raw_id = _raw_id(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                continue
            if raw_id:
                ids.add(raw_id)
    return ids


def _raw_id(text: str) -> str | None:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    raw_id = data.get("id") if isinstance(data, dict) else None
    return raw_id if isinstance(raw_id, str) else None
