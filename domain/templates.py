"""Email templates: YAML definitions, compiled once per version, rendered per recipient.

Templates are written by marketers, so they are untrusted code. They run in a jinja2
`SandboxedEnvironment` tightened further here:

- attribute access to internals (`__class__`, `_private`, ...) raises instead of rendering empty;
- every loop, call and output is charged to a per-render step budget, so nested loops and
  recursive macros stop early instead of spinning;
- every operation that can multiply a string's size (`*`, `**`, `%`, `format`, `center`,
  `replace`, `join`, `str.ljust`, ...) is checked BEFORE it allocates, and everything that can only
  add sizes (`~`, `+`, macro results, filter results) is checked right after, so no value grows
  past `MAX_VALUE_CHARS`;
- each rendered part is capped at `MAX_PART_CHARS`.

Any breach is a `TemplateRenderError` naming the template, the part, the line and the problem.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.text_part import TEXT_VALUE_FILTER, check_text_value, derive_text_template, finish_text, html_to_text
from domain.yaml_source import DefinitionError, load_yaml

MAX_PART_CHARS = 1024 * 1024  # one rendered part (subject, html, text)
MAX_VALUE_CHARS = 1024 * 1024  # any string or list built while rendering
MAX_PRODUCED_CHARS = 4 * 1024 * 1024  # all output produced by one render, captured or not
MAX_STEPS = 100_000  # loop iterations + calls + outputs per render
MAX_RANGE = 10_000  # items one range() may produce
MAX_CALL_DEPTH = 40  # nested macro / function calls
MAX_WIDTH = 1_000  # padding widths in format specs and width filters
MAX_SUBJECT_CHARS = 900  # keeps the encoded header line under RFC 5322's 998

TEMPLATE_PARTS = ("subject", "preheader", "html", "text")


class TemplateRenderError(ValueError):
    """A template could not be rendered for one recipient; the message says where and why."""


class _LimitExceeded(SecurityError):
    """A render budget or size bound was exceeded."""


class TemplateDefinition(BaseModel):
    """One version of a template as the marketer wrote it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
    version: int = Field(1, ge=1)
    subject: str = Field(min_length=1, max_length=MAX_SUBJECT_CHARS * 4)
    preheader: str = ""
    html: str = Field(min_length=1)
    text: str | None = None


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str


# -- parsing ----------------------------------------------------------------------------------


def parse_template(text: str, filename: str, version: int = 1) -> TemplateDefinition:
    """Parse and check a template YAML file; errors name the file, line and field."""
    source = load_yaml(text, filename)
    if not isinstance(source.data, dict):
        raise source.error([], "a template must be a mapping with id, subject and html")
    data = dict(source.data)
    data.setdefault("version", version)
    try:
        defn = TemplateDefinition.model_validate(data)
    except ValidationError as exc:
        raise source.from_validation_error(exc) from None
    for part in TEMPLATE_PARTS:
        body = getattr(defn, part)
        if body is None:
            continue
        try:
            _compile_part(body, autoescape=part == "html")
        except TemplateSyntaxError as exc:
            field_line = source.line_of([part]) or 1
            # Block scalars (`html: |`) start on the line after the key.
            offset = exc.lineno if "\n" in body.rstrip("\n") else exc.lineno - 1
            raise DefinitionError(filename, field_line + max(offset, 0), part, f"template error: {exc.message}") from None
    return defn


# -- render budget ----------------------------------------------------------------------------


class _Budget:
    __slots__ = ("steps", "produced", "depth", "text_exact")

    def __init__(self) -> None:
        self.steps = 0
        self.produced = 0
        self.depth = 0
        self.text_exact = True  # cleared when a derived text part must be remade from the html

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise _LimitExceeded(f"template does too much work: more than {MAX_STEPS} loop iterations, calls and outputs")


_budget: ContextVar[_Budget | None] = ContextVar("tidings_template_budget", default=None)


def _check_size(value: Any, what: str) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_VALUE_CHARS:
        raise _LimitExceeded(f"{what} produced {len(value)} items/characters, more than {MAX_VALUE_CHARS}")
    return value


def _check_width(width: Any, what: str) -> None:
    if isinstance(width, str):
        width = len(width)
    if isinstance(width, int) and abs(width) > MAX_WIDTH:
        raise _LimitExceeded(f"{what} width {width} is larger than {MAX_WIDTH}")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")


def _check_percent_format(fmt: str) -> None:
    for width, precision in _PERCENT_SPEC.findall(fmt):
        for number in (width, precision):
            if number == "*":
                raise _LimitExceeded("'*' widths in format strings are not allowed")
            if number:
                _check_width(int(number), "format")


def _check_brace_format(fmt: str) -> None:
    for _, _, spec, _ in string.Formatter().parse(fmt):
        if not spec:
            continue
        if "{" in spec:
            raise _LimitExceeded("nested fields in format specs are not allowed")
        for number in _DIGITS.findall(spec):
            _check_width(int(number), "format")


def _projected_join(items: list[Any], separator: str) -> None:
    total = sum(len(str(item)) for item in items) + len(separator) * max(len(items) - 1, 0)
    if total > MAX_VALUE_CHARS:
        raise _LimitExceeded(f"join would produce {total} characters, more than {MAX_VALUE_CHARS}")


def _projected_replace(value: str, old: str, new: str, count: int | None = None) -> None:
    hits = value.count(old) if old else len(value) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    total = len(value) + hits * (len(new) - len(old))
    if total > MAX_VALUE_CHARS:
        raise _LimitExceeded(f"replace would produce {total} characters, more than {MAX_VALUE_CHARS}")


def _guarded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise _LimitExceeded(f"range() of {len(numbers)} items is larger than {MAX_RANGE}")
    return numbers


class _GuardedNamespace(Namespace):
    """`namespace()` whose attributes cannot be grown past the value bound."""

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, _check_size(value, f"namespace attribute {name!r}"))


def _iterate(iterable: Iterable[Any]) -> Iterator[Any]:
    """Wraps every `{% for %}` iterable: one step per item."""
    budget = _budget.get()
    for item in iterable:
        if budget is not None:
            budget.step()
        yield item


def _concat(value: str) -> str:
    """Wraps every `~` concatenation: the result may not pass the value bound."""
    return _check_size(value, "'~' concatenation")


def _finalize(value: Any) -> Any:
    """Runs on every `{{ output }}`, including those captured by macros and `{% set %}` blocks."""
    budget = _budget.get()
    if budget is not None:
        budget.step()
        if isinstance(value, str):
            budget.produced += len(value)
            if budget.produced > MAX_PRODUCED_CHARS:
                raise _LimitExceeded(f"template produced more than {MAX_PRODUCED_CHARS} characters")
    return value


# -- filters whose size is checked before they allocate ---------------------------------------

# filter name -> the keyword of its width-like argument (the first argument after the value)
_WIDTH_FILTERS = {"center": "width", "indent": "width", "wordwrap": "width", "slice": "slices", "batch": "linecount"}


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    width_keyword = _WIDTH_FILTERS.get(name)
    # pass_context / pass_eval_context / pass_environment filters receive that first.
    offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        value, rest = (args[offset], args[offset + 1 :]) if len(args) > offset else (None, ())
        if width_keyword is not None:
            _check_width(rest[0] if rest else kwargs.get(width_keyword), name)
        if name == "format" and isinstance(value, str):
            _check_percent_format(value)
        elif name == "replace" and isinstance(value, str) and len(rest) >= 2:
            count = rest[2] if len(rest) > 2 else kwargs.get("count")
            _projected_replace(value, str(rest[0]), str(rest[1]), count)
        elif name == "join" and value is not None and not isinstance(value, str):
            items = list(value)
            _projected_join(items, str(rest[0]) if rest else str(kwargs.get("d", "")))
            args = (*args[:offset], items, *args[offset + 1 :])
        return _check_size(func(*args, **kwargs), f"filter {name!r}")

    return guarded


_STR_WIDTH_METHODS = {"ljust", "rjust", "center", "zfill", "expandtabs"}


class _GuardedEnvironment(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=ChainableUndefined, finalize=_finalize)
        self.globals["range"] = _guarded_range
        self.globals["namespace"] = _GuardedNamespace
        self.globals.pop("lipsum", None)
        self.filters = {name: _guard_filter(name, func) for name, func in self.filters.items()}
        self.tidings_iterate = _iterate
        self.tidings_concat = _concat

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__!r} object is not allowed")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                    if len(seq) * times > MAX_VALUE_CHARS:
                        raise _LimitExceeded(f"'*' would produce {len(seq) * times} items/characters, more than {MAX_VALUE_CHARS}")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
                if right > 0 and right * abs(left).bit_length() > 4096:
                    raise _LimitExceeded(f"'**' result would have more than 4096 bits ({left} ** {right})")
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        return _check_size(super().call_binop(context, operator, left, right), f"operator {operator!r}")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = _budget.get()
        if budget is not None:
            budget.step()
            if budget.depth >= MAX_CALL_DEPTH:
                raise _LimitExceeded(f"calls nested deeper than {MAX_CALL_DEPTH} (recursive macro?)")
            budget.depth += 1
        try:
            _precheck_call(__obj, args, kwargs)
            return _check_size(super().call(__context, __obj, *args, **kwargs), "call")
        finally:
            if budget is not None:
                budget.depth -= 1


def _precheck_call(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Method calls on strings that could allocate without bound."""
    target = getattr(getattr(func, "__wrapped__", func), "__self__", None)
    if not isinstance(target, str):
        return
    name = getattr(func, "__name__", "")
    if name in ("format", "format_map"):
        _check_brace_format(target)
    elif name in _STR_WIDTH_METHODS:
        _check_width(args[0] if args else kwargs.get("tabsize", kwargs.get("width")), f"str.{name}")
    elif name == "replace" and len(args) >= 2:
        _projected_replace(target, str(args[0]), str(args[1]), args[2] if len(args) > 2 else kwargs.get("count"))
    elif name == "join" and args:
        items = list(args[0])
        _projected_join(items, target)


class _Instrument(NodeTransformer):
    """Routes every `for` iterable and `~` concatenation through the budget checks."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.EnvironmentAttribute("tidings_iterate"), [node.iter], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.EnvironmentAttribute("tidings_concat"), [node], [], None, None, lineno=node.lineno)


def _text_value(value: Any, empty_ok: int) -> str:
    """Values in a derived text part: as the html shows them; flags any whose whitespace would collapse."""
    text, exact = check_text_value(value, empty_ok)
    if not exact:
        budget = _budget.get()
        if budget is not None:
            budget.text_exact = False
    return text


_HTML_ENV = _GuardedEnvironment(autoescape=True)
_TEXT_ENV = _GuardedEnvironment(autoescape=False)
# Text parts derived from the html (domain/text_part.py): the text environment plus the value check.
_DERIVED_TEXT_ENV = _GuardedEnvironment(autoescape=False)
_DERIVED_TEXT_ENV.filters[TEXT_VALUE_FILTER] = _text_value
_CONSTRUCT_START = ("{{", "{%", "{#")


def _compile_part(source: str, *, autoescape: bool, env: Any = None) -> Any:
    env = env or (_HTML_ENV if autoescape else _TEXT_ENV)
    tree = env.parse(source)
    _Instrument().visit(tree)
    return env.from_string(tree)


# -- rendering --------------------------------------------------------------------------------


class CompiledTemplate:
    """A template version compiled once; `render` is the per-recipient path."""

    def __init__(self, defn: TemplateDefinition) -> None:
        self.id = defn.id
        self.version = defn.version
        self._parts = {
            part: _compile_part(getattr(defn, part), autoescape=part == "html")
            for part in TEMPLATE_PARTS
            if getattr(defn, part) is not None
        }
        # Parts without any Jinja construct render the same for everyone: once, here.
        self._constant: dict[str, str] = {}
        for part in self._parts:
            if not any(start in getattr(defn, part) for start in _CONSTRUCT_START):
                token = _budget.set(_Budget())
                try:
                    self._constant[part] = self._render_part(part, {})
                finally:
                    _budget.reset(token)
        # No text part: the html template converted once into a text template (None when it cannot be).
        self._derived_text = None
        if defn.text is None:
            derived = derive_text_template(defn.html, _HTML_ENV)
            if derived is not None:
                self._derived_text = _compile_part(derived, autoescape=False, env=_DERIVED_TEXT_ENV)

    def render(self, variables: dict[str, Any]) -> RenderedEmail:
        token = _budget.set(_Budget())
        try:
            subject = _one_line(self._render_part("subject", variables))
            preheader = _one_line(self._render_part("preheader", variables))
            html = self._render_part("html", variables)
            text = self._render_part("text", variables) if "text" in self._parts else self._text_from_html(html, variables)
        finally:
            _budget.reset(token)
        if len(subject) > MAX_SUBJECT_CHARS:
            raise TemplateRenderError(f"template {self.id} v{self.version} subject: {len(subject)} characters, more than {MAX_SUBJECT_CHARS}")
        return RenderedEmail(subject=subject, preheader=preheader, html=html, text=text)

    def _text_from_html(self, html: str, variables: dict[str, Any]) -> str:
        """The derived text template when its output is exact for these values, else html_to_text."""
        if self._derived_text is None:
            return html_to_text(html)
        token = _budget.set(_Budget())  # the html's render already paid for this work
        try:
            chunks: list[str] = []
            size = 0
            for chunk in self._derived_text.generate(variables):
                size += len(chunk)
                if size > MAX_PART_CHARS:
                    return html_to_text(html)
                chunks.append(chunk)
            exact = _budget.get().text_exact  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - the html rendered, so the text it gives is the answer
            return html_to_text(html)
        finally:
            _budget.reset(token)
        return finish_text("".join(chunks)) if exact else html_to_text(html)

    def _render_part(self, part: str, variables: dict[str, Any]) -> str:
        constant = self._constant.get(part)
        if constant is not None:
            return constant
        chunks: list[str] = []
        size = 0
        try:
            for chunk in self._parts[part].generate(variables):
                size += len(chunk)
                if size > MAX_PART_CHARS:
                    raise _LimitExceeded(f"output is larger than {MAX_PART_CHARS} characters")
                chunks.append(chunk)
        except Exception as exc:  # noqa: BLE001 - any failure of untrusted template code is a render error
            raise TemplateRenderError(self._describe(part, exc)) from None
        return "".join(chunks)

    def _describe(self, part: str, exc: BaseException) -> str:
        line = _template_line(exc)
        where = f"template {self.id} v{self.version} {part}" + (f" line {line}" if line else "")
        if isinstance(exc, RecursionError):
            problem = "recursion too deep"
        elif isinstance(exc, MemoryError):
            problem = "out of memory"
        elif isinstance(exc, _LimitExceeded):
            problem = f"limit exceeded: {exc}"
        elif isinstance(exc, SecurityError):
            problem = f"unsafe template: {exc}"
        else:
            problem = f"{type(exc).__name__}: {exc}"
        return f"{where}: {problem}"


def compile_template(defn: TemplateDefinition) -> CompiledTemplate:
    return CompiledTemplate(defn)


def _template_line(exc: BaseException) -> int | None:
    """Jinja rewrites tracebacks so template frames carry the template's own line numbers."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


_LINE_BREAKS = re.compile(r"[\r\n\x00\t\v\f\u2028\u2029\x85]+")


def _one_line(value: str) -> str:
    """Header-bound parts are single lines: breaks become spaces (never header injection)."""
    return " ".join(_LINE_BREAKS.sub(" ", value).split())


__all__ = [
    "CompiledTemplate",
    "RenderedEmail",
    "TemplateDefinition",
    "TemplateRenderError",
    "compile_template",
    "html_to_text",
    "parse_template",
]
