"""The text part derived from the html template at compile time equals html_to_text of the rendered html."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from domain.templates import _HTML_ENV, TemplateDefinition, compile_template, html_to_text, parse_template
from domain.text_part import derive_text_template

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "templates").glob("*.yaml"))

# Values chosen to hit every way a value could change html_to_text's reading: whitespace of every
# kind, markup characters (escaped in the html), entities, URLs equal to link targets, emptiness.
tricky_text = st.one_of(
    st.sampled_from(["", " ", "Ada", "Ada Lovelace", " Ada", "Ada ", "A  B", "a\nb", "a\tb", "\xa0", "x\u2028y",
                     "<b>bold</b>", "&amp;", "&lt;", "a & b", "'\"", "https://x.test/", "#top", "pro", "-", ".",
                     "p;", "amp;", " href=y ", "alt=z", "--", "x"]),
    st.text(alphabet=st.sampled_from(list("ab <>&;#\"' \n\t\xa0-x/:.")), max_size=12),
)
values = st.one_of(tricky_text, st.integers(-5, 5), st.none(), st.floats(0, 100, allow_nan=False))


def variables():  # type: ignore[no-untyped-def]
    return st.fixed_dictionaries({
        "subscriber": st.fixed_dictionaries({}, optional={"first_name": values, "plan": st.sampled_from(["pro", "free", ""])}),
        "event": st.fixed_dictionaries({"properties": st.fixed_dictionaries(
            {}, optional={"cart_id": values, "items": values, "order_id": values, "total": st.floats(0, 999, allow_nan=False)})}),
        "v": values, "w": values, "c": st.booleans(), "items": st.lists(values, max_size=3),
    })


@functools.lru_cache(maxsize=None)
def html_only(path: Path):  # type: ignore[no-untyped-def]
    defn = parse_template(path.read_text(), path.name)
    return compile_template(defn.model_copy(update={"text": None}))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=variables())
def test_example_templates_text_equals_html_to_text_of_the_html(path: Path, data: dict) -> None:
    rendered = html_only(path).render(data)
    assert rendered.text == html_to_text(rendered.html)


def test_the_examples_without_a_text_part_get_a_derived_text_template() -> None:
    derived = [p.stem for p in EXAMPLES if derive_text_template(parse_template(p.read_text(), p.name).html, _HTML_ENV)]
    assert "welcome" in derived and len(derived) >= len(EXAMPLES) - 2


# Pieces of html and Jinja, glued at random into templates: the derivation must either refuse the
# template or be exact for every value.
PIECES = [
    "<p>", "</p>", "<br>", "<li>", "</li>", "<ul>", "<b>", "</b>", "<h1>", "</h1>", "<a href=\"https://x.test/",
    "<a href=\"#", "<a href=\"", "<a title=\"", "\">", "</a>", "<img alt=\"", "<img src=\"", "\">", "<title>",
    "</title>", "<!-- ", " -->", "&amp;", "&", "&nbsp;", "<", ">", " ", "  ", "\n", "x", "Hello", "https://x.test/",
    "{{ v }}", "{{ w }}", "{{ v | default('') }}", "{{ v | upper }}", "{{ v | safe }}", "{{- v -}}",
    "{% if c %}", "{% else %}", "{% endif %}", "{% for i in items %}", "{{ i }}", "{% endfor %}",
    "{% set z = 1 %}", "{# note #}", "{%- if v %}", "{% endif -%}", "{", "}",
]


# A few pieces only, so that the risky neighbourhoods (seams, entities, attributes) come up often.
FOCUSED = [" ", "x", "{% if c %}", "{% endif %}", "{{ v }}", "{{ w }}", "<a href=\"https://x.test/", "<a title=\"",
           "\" href=\"https://x.test/", "\">", "</a>", "&am", "<b>", "</b>", "<img alt=\"", "<p>", "{% for i in items %}",
           "{% endfor %}", "<li>", "<!-- ", " -->"]


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(PIECES), min_size=1, max_size=14), data=variables())
def test_random_templates_are_refused_or_exact(pieces: list[str], data: dict) -> None:
    assert_refused_or_exact("".join(pieces), data)


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(FOCUSED), min_size=3, max_size=9), data=variables())
def test_focused_random_templates_are_refused_or_exact(pieces: list[str], data: dict) -> None:
    assert_refused_or_exact("".join(pieces), data)


def assert_refused_or_exact(source: str, data: dict) -> None:
    try:
        template = compile_template(TemplateDefinition(id="t", subject="s", html=source))
    except Exception:  # noqa: BLE001 - not a valid Jinja template: nothing to compare
        return
    try:
        rendered = template.render(data)
    except Exception:  # noqa: BLE001
        return
    assert rendered.text == html_to_text(rendered.html), (source, template._derived_text is not None)


@pytest.mark.parametrize(
    "html",
    [
        "<p>{{ v | safe }}</p>",  # markup from a value
        "<a {{ v }} href=\"https://x.test/\">x</a>",  # a value could add an href
        "<img src=\"{{ v }}\" alt=\"x\">",  # ... or an alt before the static one
        "<p>a {% if c %}b{% endif %} c</p>",  # two spaces when the block is empty
        "{% if c %}<a href=\"https://x.test/\">{% endif %}x</a>",  # a link across a block
        "x{% if c %}<a href=\"https://x.test/\">y{% endif %}z</a>",  # ... whose seams look harmless
        "<a href=\"{{ v }}\">x</a>",  # the target may be empty or '#'
        "<a href=\"https://x.test/{{ v }}\">{{ w }}</a>",  # the label may equal the target
        "<p>&am{{ v }}</p>",  # an entity across a value
        "<!-- {{ v }} -->",  # a value could end the comment
        "<p{{ v }}>x</p>",  # a value in a tag name
        "{% macro m() %}<b>x</b>{% endmacro %}{{ m() }}",
        "<p>{% raw %}{{ x }}{% endraw %}</p>",
    ],
)
def test_templates_a_value_could_change_are_not_derived(html: str) -> None:
    assert derive_text_template(html, _HTML_ENV) is None


@pytest.mark.parametrize("value", ["", " ", "Ada", "A  B", "a\nb", "\xa0", None])
def test_values_whose_whitespace_would_collapse_fall_back_to_the_html(value: object) -> None:
    template = compile_template(TemplateDefinition(id="t", subject="s", html="<p>a {{ v }} b</p><p>{{ v }}</p>"))
    assert template._derived_text is not None
    rendered = template.render({"v": value})
    assert rendered.text == html_to_text(rendered.html)
