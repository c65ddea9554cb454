"""The plain-text part of an email, made from its HTML.

`html_to_text(markup)` converts rendered HTML: tags stripped, link targets kept, whitespace
collapsed. It costs ~80 µs for a small email, which is most of a render, so a template without a
`text:` part does not call it per recipient: `derive_text_template(html_source, env)` converts the
HTML *template* once, at compile time, into a text template that keeps the Jinja constructs.
Rendering that template and `finish_text` give exactly what `html_to_text` gives on the rendered
HTML, because:

- the conversion runs the same scanner over the template source with every Jinja construct
  replaced by a placeholder character, and refuses (returns None) wherever a rendered value could
  change the scan: a construct in a tag name, in the attributes of `<a>`/`<img>` before the link
  target or alt text, in a comment, next to a `&` (an entity), a control block inside a tag or
  across a link, a link whose label or target is only known at render time, and any construct
  that can emit markup (`safe`, macros, `{% filter %}`, block `set`, ...: only a list of filters
  known to return plain values is accepted);
- values in the HTML are auto-escaped and html_to_text unescapes them, so the text template emits
  them unescaped; the one thing it cannot reproduce is whitespace collapsing across a value, so a
  value whose whitespace would collapse (leading/trailing/double spaces, line breaks, and empty
  values between two spaces) is reported by `check_text_value`, and the caller then falls back
  to `html_to_text` on the rendered HTML;
- control blocks whose seams could leave two spaces side by side (`a {% if x %}b{% endif %} c`)
  are refused at compile time.

Anything refused simply keeps the per-recipient `html_to_text`: slower, never different.
The equivalence is checked by property tests over the example templates (tests/unit/test_text_part.py).
"""

from __future__ import annotations

import html
import re
from typing import Any

from jinja2 import nodes

# -- html to text -----------------------------------------------------------------------------
# A hand-rolled scanner (str.split / str.partition) rather than html.parser or a tag regex: it
# is an order of magnitude faster.

_INVISIBLE = re.compile(r"<(script|style|head|title)\b.*?</\1\s*>|<!--.*?-->|<!\[CDATA\[.*?\]\]>", re.S | re.I)
_INVISIBLE_HINTS = ("<!", "<s", "<S", "<h", "<H", "<t", "<T")
_ATTR = {name: re.compile(rf"\b{name}\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+))", re.I) for name in ("href", "alt")}
_BLOCK_TAGS = frozenset(
    "p div br h1 h2 h3 h4 h5 h6 ul ol li tr table hr blockquote section article header footer pre".split()
)


def _attr(attrs: str, name: str) -> str | None:
    match = _ATTR[name].search(attrs)
    if match is None:
        return None
    return html.unescape(next(g for g in match.groups() if g is not None))


def _collapse(text: str) -> str:
    """Whitespace runs become one space, keeping a space at either edge."""
    words = text.split()
    if not words:
        return " " if text else ""
    inner = " ".join(words)
    lead = " " if text[0].isspace() else ""
    tail = " " if text[-1].isspace() else ""
    return html.unescape(lead + inner + tail)


def html_to_text(markup: str) -> str:
    """A plain-text alternative: tags stripped, link targets kept, whitespace collapsed."""
    if any(hint in markup for hint in _INVISIBLE_HINTS):
        markup = _INVISIBLE.sub("", markup)
    pieces = markup.split("<")
    out: list[str] = [_collapse(pieces[0])]
    links: list[tuple[str | None, int]] = []
    for piece in pieces[1:]:
        inside, closed, after = piece.partition(">")
        if not closed or not inside or not (inside[0].isalpha() or inside[0] == "/"):
            out.append(_collapse("<" + piece))  # a bare "<" in text, not a tag
            continue
        closing = inside[0] == "/"
        name_and_attrs = inside[1:] if closing else inside
        tag = name_and_attrs.split(None, 1)[0].rstrip("/").lower() if name_and_attrs.strip() else ""
        if tag == "li":
            if not closing:
                out.append("\n- ")
        elif tag in _BLOCK_TAGS:
            out.append("\n")
        elif tag == "a":
            if not closing:
                links.append((_attr(inside, "href"), len(out)))
            elif links:
                href, start = links.pop()
                label = " ".join("".join(out[start:]).split())
                if href and not href.startswith("#") and href != label:
                    out.append(f" ({href})" if label else href)
        elif tag == "img" and not closing:
            out.append(_attr(inside, "alt") or "")
        out.append(_collapse(after))
    return finish_text("".join(out))


def finish_text(text: str) -> str:
    """The line pass: lines stripped, at most one blank line in a row, one final newline."""
    text = "\n".join(line.strip() for line in text.split("\n"))
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"


# -- the text template, derived once per template version -------------------------------------

TEXT_VALUE_FILTER = "tidings_text_value"
EMPTY_OK, NOT_EMPTY = 1, 0

_FIRST_HOLE = 0xE000  # Unicode private use area: never in a template (checked), never a word character
_LAST_HOLE = 0xF8FF
_HOLE = re.compile("[\ue000-\uf8ff]")
_CONSTRUCT = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_NEWLINES = re.compile(r"(\r\n|\r|\n)")
_KEYWORD = re.compile(r"\{%[+]?\s*(\w+)")
_HOLE_IN_TAG_NAME = re.compile(r"<[/!]?[^\s>]*[\ue000-\uf8ff]")
_HOLE_IN_ENTITY = re.compile(r"&[^\t\n\f <&;]*[\ue000-\uf8ff]")
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")

# Filters that return plain values (never Markup), so their output is escaped like any value.
_PLAIN_FILTERS = frozenset(
    "default d upper lower title capitalize trim format int float round length count string abs first last "
    "join replace truncate sum min max reverse sort unique list wordcount dictsort batch slice map select "
    "reject selectattr rejectattr items".split()
)
# Nodes that can produce Markup, change escaping, or pull in other templates.
_MARKUP_NODES = (
    nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.AssignBlock, nodes.ScopedEvalContextModifier,
    nodes.EvalContextModifier, nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends, nodes.Block,
    nodes.MarkSafe, nodes.MarkSafeIfAutoescape, nodes.With, nodes.Scope, nodes.OverlayScope, nodes.ExprStmt,
)
_CONTROL = {"if": "if", "for": "for", "elif": "mid", "else": "mid", "endif": "end", "endfor": "end", "set": "set"}


class _NotDerivable(Exception):
    """This template's text part must be made from each rendered HTML."""


def derive_text_template(source: str, env: Any) -> str | None:
    """The source of a text template equivalent to html_to_text(render(source)), or None."""
    try:
        return _derive(source, env)
    except _NotDerivable:
        return None


def check_text_value(value: Any, empty_ok: int) -> tuple[str, bool]:
    """(the value as the HTML shows it once unescaped, whether it keeps the derived text exact)."""
    text = str(value)
    if not text:
        return text, bool(empty_ok)
    return text, text == " ".join(text.split())


def _derive(source: str, env: Any) -> str:
    if _HOLE.search(source):
        raise _NotDerivable("private-use characters in the template")
    _check_nodes(env.parse(source))
    data, constructs = _split(source, env)
    if len(constructs) > _LAST_HOLE - _FIRST_HOLE:
        raise _NotDerivable("too many constructs")
    holes = [chr(_FIRST_HOLE + n) for n in range(len(constructs))]
    markup = data[0] + "".join(hole + text for hole, text in zip(holes, data[1:]))
    blocks = {hole for hole, construct in zip(holes, constructs) if construct.startswith("{%")}
    comments = {hole for hole, construct in zip(holes, constructs) if construct.startswith("{#")}
    markup = "".join(c for c in markup if c not in comments)  # comments render as nothing
    text, kinds = _scan(markup, blocks)
    if "{" in text or "\r" in text:
        raise _NotDerivable("static text that Jinja would read as a construct or rewrite")
    empty_ok = _check_seams(text, blocks, {hole: c for hole, c in zip(holes, constructs)})
    out = []
    for char in text:
        if not _HOLE.match(char):
            out.append(char)
            continue
        construct = constructs[ord(char) - _FIRST_HOLE]
        if char in blocks:
            out.append(construct)
        elif kinds.get(char) is None:
            raise _NotDerivable("a value in an unexpected place")
        elif kinds[char] == "attr":
            out.append(construct)  # link targets and alt texts are copied as they are, like html_to_text
        else:
            flag = EMPTY_OK if empty_ok[char] else NOT_EMPTY
            out.append("{{ (" + construct[2:-2] + f") | {TEXT_VALUE_FILTER}({flag}) }}}}")
    for hole in blocks:
        if text.count(hole) != 1:
            raise _NotDerivable("a control block that is not in the text")
    return "".join(out)


def _check_nodes(tree: nodes.Template) -> None:
    for node in tree.find_all((nodes.Node,)):
        if isinstance(node, _MARKUP_NODES):
            raise _NotDerivable(f"{type(node).__name__} can emit markup")
        if isinstance(node, nodes.Filter) and node.name not in _PLAIN_FILTERS:
            raise _NotDerivable(f"filter {node.name!r} is not known to return plain values")


def _split(source: str, env: Any) -> tuple[list[str], list[str]]:
    """Data and constructs, with Jinja's newline handling and `-` whitespace control applied.

    Checked against Jinja's own parse: the pieces put back together must parse to the same tree.
    """
    lines = _NEWLINES.split(source)[::2]
    if lines and lines[-1] == "":
        del lines[-1]  # keep_trailing_newline is off
    source = "\n".join(lines)
    data: list[str] = []
    constructs: list[str] = []
    position = 0
    strip_next = False
    for match in _CONSTRUCT.finditer(source):
        construct = match.group()
        text = source[position : match.start()]
        if strip_next:
            text = text.lstrip()
        if construct[2:3] == "-":
            text = text.rstrip()
            construct = construct[:2] + construct[3:]
        strip_next = construct[-3:-2] == "-"
        if strip_next:
            construct = construct[:-3] + construct[-2:]
        keyword = _KEYWORD.match(construct)
        if construct.startswith("{%") and (keyword is None or keyword.group(1) not in _CONTROL):
            raise _NotDerivable(f"block tag {construct[:30]!r}")
        if construct.startswith("{%") and keyword.group(1) == "set" and "=" not in construct:
            raise _NotDerivable("block set")
        data.append(text)
        constructs.append(construct)
        position = match.end()
    tail = source[position:]
    data.append(tail.lstrip() if strip_next else tail)
    rebuilt = data[0] + "".join(c + d for c, d in zip(constructs, data[1:]))
    try:
        same = env.parse(rebuilt) == env.parse(source)
    except Exception:  # noqa: BLE001 - any doubt means no derivation
        same = False
    if not same:
        raise _NotDerivable("constructs could not be split out exactly")
    return data, constructs


def _scan(markup: str, blocks: set[str]) -> tuple[str, dict[str, str]]:
    """html_to_text's scan over markup with holes: the text before the line pass, and each hole's kind."""
    if _HOLE_IN_TAG_NAME.search(markup):
        raise _NotDerivable("a construct in a tag name or after a bare '<'")
    if _HOLE_IN_ENTITY.search(markup):
        raise _NotDerivable("a construct inside a character reference")
    if any(hint in markup for hint in _INVISIBLE_HINTS):
        for match in _INVISIBLE.finditer(markup):
            found = set(_HOLE.findall(match.group()))
            if found and (match.group().startswith("<!") or found & blocks):
                raise _NotDerivable("a construct in a comment, or a control block in an invisible element")
        markup = _INVISIBLE.sub("", markup)
    kinds: dict[str, str] = {}

    def text_run(run: str) -> str:
        for hole in _HOLE.findall(run):
            kinds[hole] = "text"
        return _collapse(run)

    pieces = markup.split("<")
    out: list[str] = [text_run(pieces[0])]
    blocks_seen = sum(1 for c in pieces[0] if c in blocks)
    links: list[tuple[str | None, int, int]] = []
    for piece in pieces[1:]:
        inside, closed, after = piece.partition(">")
        if not closed or not inside or not (inside[0].isalpha() or inside[0] == "/"):
            if _HOLE.search(inside if closed else piece):
                raise _NotDerivable("a construct after a bare '<'")
            out.append(text_run("<" + piece))
            blocks_seen += sum(1 for c in piece if c in blocks)
            continue
        closing = inside[0] == "/"
        name_and_attrs = inside[1:] if closing else inside
        tag = name_and_attrs.split(None, 1)[0].rstrip("/").lower() if name_and_attrs.strip() else ""
        if _HOLE.search(inside):
            _check_tag(inside, tag, closing, blocks)
        if tag == "li":
            if not closing:
                out.append("\n- ")
        elif tag in _BLOCK_TAGS:
            out.append("\n")
        elif tag == "a":
            if not closing:
                links.append((_attr(inside, "href"), len(out), blocks_seen))
            elif links:
                href, start, seen = links.pop()
                if seen != blocks_seen:
                    raise _NotDerivable("a control block inside a link")
                label = " ".join("".join(out[start:]).split())
                if _link_shown(href, label):
                    assert href is not None
                    for hole in _HOLE.findall(href):
                        kinds[hole] = "attr"
                    out.append(f" ({href})" if _non_empty(label) else href)
        elif tag == "img" and not closing:
            alt = _attr(inside, "alt") or ""
            for hole in _HOLE.findall(alt):
                kinds[hole] = "attr"
            out.append(alt)
        out.append(text_run(after))
        blocks_seen += sum(1 for c in after if c in blocks)
    return "".join(out), kinds


def _check_tag(inside: str, tag: str, closing: bool, blocks: set[str]) -> None:
    """Holes in a tag may only be values that cannot change what html_to_text reads from it."""
    holes = [m.start() for m in _HOLE.finditer(inside)]
    if any(inside[i] in blocks for i in holes):
        raise _NotDerivable("a control block inside a tag")
    if closing or tag not in ("a", "img"):
        return  # only the (static) tag name matters
    target = _ATTR["href" if tag == "a" else "alt"].search(inside)
    if target is None:
        raise _NotDerivable(f"a value in an <{tag}> tag without a static {'href' if tag == 'a' else 'alt'}")
    group = 1 if target.group(1) is not None else 2 if target.group(2) is not None else 3
    start, end = target.span(group)
    for i in holes:
        inside_value = start <= i < end and group != 3
        if not inside_value and i < target.end():
            raise _NotDerivable(f"a value before the {tag} tag's target attribute")


def _static_ends(value: str) -> tuple[str, str]:
    """The text before the first hole and after the last (the whole value when it has none)."""
    parts = _HOLE.split(value)
    return parts[0], parts[-1]


def _non_empty(label: str) -> bool:
    if not _HOLE.search(label):
        return bool(label)
    if _HOLE.sub("", label).strip():
        return True
    raise _NotDerivable("a link label that may be empty")


def _link_shown(href: str | None, label: str) -> bool:
    """html_to_text's `href and not href.startswith("#") and href != label`, decided at compile time."""
    if href is None:
        return False
    if not _HOLE.search(href):
        if not href or href.startswith("#"):
            return False
        if not _HOLE.search(label):
            return href != label
    elif _HOLE.match(href):
        raise _NotDerivable("a link target that starts with a value")
    elif href.startswith("#"):
        return False
    h_head, h_tail = _static_ends(href)
    l_head, l_tail = _static_ends(label)
    if _HOLE.search(label):
        l_head, l_tail = l_head.rstrip(), l_tail.lstrip()
    heads_differ = not (h_head.startswith(l_head) or l_head.startswith(h_head))
    tails_differ = not (h_tail.endswith(l_tail) or l_tail.endswith(h_tail))
    if heads_differ or tails_differ:
        return True
    raise _NotDerivable("a link whose label may equal its target")


def _side(char: str | None) -> str:
    if char is None or char == "\n":
        return "edge"  # the line pass strips whitespace next to a line break or the ends
    if _HOLE.match(char):
        return "unknown"
    return "space" if char.isspace() else "solid"


def _loose(a: str | None, b: str | None) -> bool:
    """Whether rendered text could put whitespace (or nothing) on both sides of this seam."""
    return _side(a) in ("space", "unknown") and _side(b) in ("space", "unknown")


def _check_seams(text: str, blocks: set[str], constructs: dict[str, str]) -> dict[str, bool]:
    """Refuses control blocks that could leave two spaces side by side; says which values may be empty."""
    at = lambda i: text[i] if 0 <= i < len(text) else None  # noqa: E731
    groups: list[list[int]] = []
    stack: list[list[int]] = []
    for i, char in enumerate(text):
        if char not in blocks:
            continue
        kind = _CONTROL[_KEYWORD.match(constructs[char]).group(1)]  # type: ignore[union-attr]
        if kind in ("if", "for"):
            stack.append([i])
        elif kind == "mid" and stack:
            stack[-1].append(i)
        elif kind == "end" and stack:
            group = stack.pop()
            group.append(i)
            groups.append(group)
        elif kind == "set":
            groups.append([i])
        else:
            raise _NotDerivable("unbalanced control blocks")
    if stack:
        raise _NotDerivable("unbalanced control blocks")
    for group in groups:
        lefts = [at(group[0] - 1)] + [at(i - 1) for i in group[1:]]
        rights = [at(group[-1] + 1)] + [at(i + 1) for i in group[:-1]]
        if any(_loose(a, b) for a in lefts for b in rights):
            raise _NotDerivable("a control block between two spaces")
    return {char: not _loose(at(i - 1), at(i + 1)) for i, char in enumerate(text) if _HOLE.match(char)}
