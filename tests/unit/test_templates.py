from __future__ import annotations

import time
from pathlib import Path

import pytest

from domain.templates import (
    MAX_PART_CHARS,
    TemplateDefinition,
    TemplateRenderError,
    compile_template,
    html_to_text,
    parse_template,
)
from domain.yaml_source import DefinitionError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "templates"

WELCOME = """\
id: welcome
subject: "Welcome, {{ subscriber.first_name | default('friend') }}!"
preheader: "Three things to try first"
html: |
  <h1>Hi {{ subscriber.first_name | default('there') }}</h1>
  <p>Read <a href="{{ link }}">the guide</a>.</p>
"""


def render_html(html: str, variables: dict | None = None) -> str:
    return compile_template(TemplateDefinition(id="t", subject="s", html=html)).render(variables or {}).html


# -- parsing ----------------------------------------------------------------------------------


def test_parse_reads_every_field_and_takes_the_version() -> None:
    defn = parse_template(WELCOME, "welcome.yaml", version=3)
    assert defn.id == "welcome"
    assert defn.version == 3
    assert defn.preheader == "Three things to try first"
    assert defn.text is None


@pytest.mark.parametrize("name", ["welcome.yaml", "thanks-first-order.yaml"])
def test_example_templates_parse_and_render(name: str) -> None:
    defn = parse_template((EXAMPLES / name).read_text(), name)
    rendered = compile_template(defn).render(
        {"subscriber": {"first_name": "Ada"}, "event": {"type": "order.placed", "properties": {"order_id": "o-1", "total": 12.5}}}
    )
    assert "Ada" in rendered.subject
    assert "Ada" in rendered.text and "Ada" in rendered.html


def test_bad_yaml_names_file_and_line() -> None:
    with pytest.raises(DefinitionError) as err:
        parse_template("id: x\nsubject: [unclosed\nhtml: y\n", "broken.yaml")
    assert err.value.filename == "broken.yaml"
    assert err.value.line in (2, 3)
    assert "invalid YAML" in str(err.value)


def test_missing_field_names_it() -> None:
    with pytest.raises(DefinitionError) as err:
        parse_template("id: x\nsubject: hi\n", "nohtml.yaml")
    assert err.value.field == "html"
    assert str(err.value).startswith("nohtml.yaml:")


def test_unknown_field_is_rejected_with_its_line() -> None:
    with pytest.raises(DefinitionError) as err:
        parse_template("id: x\nsubject: hi\nhtml: <p>x</p>\nsubjct: typo\n", "typo.yaml")
    assert err.value.field == "subjct"
    assert err.value.line == 4


def test_template_not_a_mapping_is_rejected() -> None:
    with pytest.raises(DefinitionError, match="mapping"):
        parse_template("- just a list\n", "list.yaml")


def test_jinja_syntax_error_names_field_and_line_inside_a_block_scalar() -> None:
    text = "id: x\nsubject: hi\nhtml: |\n  <p>one</p>\n  <p>{{ broken </p>\n"
    with pytest.raises(DefinitionError) as err:
        parse_template(text, "syntax.yaml")
    assert err.value.field == "html"
    assert err.value.line == 5
    assert "template error" in err.value.message


def test_jinja_syntax_error_in_one_line_subject() -> None:
    with pytest.raises(DefinitionError) as err:
        parse_template("id: x\nsubject: 'Hi {% if %}'\nhtml: <p>x</p>\n", "subj.yaml")
    assert (err.value.field, err.value.line) == ("subject", 2)


def test_unknown_filter_is_caught_at_parse_time() -> None:
    with pytest.raises(DefinitionError, match="no_such_filter"):
        parse_template("id: x\nsubject: '{{ a | no_such_filter }}'\nhtml: <p>x</p>\n", "filter.yaml")


# -- rendering --------------------------------------------------------------------------------


def test_render_fills_variables_and_defaults() -> None:
    compiled = compile_template(parse_template(WELCOME, "welcome.yaml"))
    named = compiled.render({"subscriber": {"first_name": "Ada"}, "link": "https://x.test/guide"})
    assert named.subject == "Welcome, Ada!"
    assert "<h1>Hi Ada</h1>" in named.html
    anonymous = compiled.render({})
    assert anonymous.subject == "Welcome, friend!"
    assert "Hi there" in anonymous.html


def test_html_is_autoescaped_but_subject_and_text_are_not() -> None:
    defn = TemplateDefinition(id="t", subject="{{ name }}", html="<p>{{ name }}</p>", text="{{ name }}")
    rendered = compile_template(defn).render({"name": "Tom & <Jerry>"})
    assert rendered.html == "<p>Tom &amp; &lt;Jerry&gt;</p>"
    assert rendered.subject == "Tom & <Jerry>"
    assert rendered.text == "Tom & <Jerry>"


def test_subject_line_breaks_from_variables_become_spaces() -> None:
    defn = TemplateDefinition(id="t", subject="Hi {{ name }}", html="<p>x</p>")
    rendered = compile_template(defn).render({"name": "Ada\r\nBcc: victim@example.com"})
    assert rendered.subject == "Hi Ada Bcc: victim@example.com"
    assert "\n" not in rendered.subject and "\r" not in rendered.subject


def test_overlong_subject_is_an_error() -> None:
    defn = TemplateDefinition(id="t", subject="{{ 'x' * 2000 }}", html="<p>x</p>")
    with pytest.raises(TemplateRenderError, match="subject"):
        compile_template(defn).render({})


def test_text_is_generated_from_html_when_absent() -> None:
    html = (
        "<html><head><title>T</title><style>p { color: red }</style></head><body>"
        "<h1>Hello  &amp;   welcome</h1><p>Read <a href='https://x.test/a?b=1&amp;c=2'>the guide</a> now.</p>"
        "<ul><li>one</li><li>two</li></ul><script>alert(1)</script><img src='l.png' alt='Logo'></body></html>"
    )
    text = compile_template(TemplateDefinition(id="t", subject="s", html=html)).render({}).text
    assert text == (
        "Hello & welcome\n\nRead the guide (https://x.test/a?b=1&c=2) now.\n\n- one\n- two\nLogo\n"
    )


def test_html_to_text_keeps_bare_links_once_and_a_lone_less_than() -> None:
    assert html_to_text('<a href="https://x.test">https://x.test</a> 1 < 2') == "https://x.test 1 < 2\n"


def test_explicit_text_part_is_rendered_not_generated() -> None:
    defn = TemplateDefinition(id="t", subject="s", html="<p>html</p>", text="plain {{ n }}")
    assert compile_template(defn).render({"n": 1}).text == "plain 1"


def test_missing_nested_variables_render_empty() -> None:
    assert render_html("<p>{{ event.properties.order_id }}</p>") == "<p></p>"


def test_runtime_error_names_template_part_and_line() -> None:
    defn = TemplateDefinition(id="oops", version=2, subject="s", html="<p>ok</p>\n<p>{{ 1 / 0 }}</p>")
    with pytest.raises(TemplateRenderError) as err:
        compile_template(defn).render({})
    assert str(err.value).startswith("template oops v2 html line 2:")
    assert "ZeroDivisionError" in str(err.value)


def test_render_does_not_reparse_per_recipient() -> None:
    compiled = compile_template(parse_template(WELCOME, "welcome.yaml"))
    first = compiled._parts["html"]
    compiled.render({"subscriber": {"first_name": "A"}})
    assert compiled._parts["html"] is first


# -- hostile templates ------------------------------------------------------------------------

HOSTILE = {
    "class walk": ("{{ ''.__class__.__mro__ }}", "unsafe template: access to attribute '__class__'"),
    "globals": ("{{ cycler.__init__.__globals__ }}", "unsafe template: access to attribute '__init__'"),
    "subclasses": ("{{ ().__class__.__base__.__subclasses__() }}", "unsafe template"),
    "private attribute": ("{{ self._TemplateReference__context }}", "unsafe template"),
    "huge range": ("{{ range(10**9) | list }}", "range() of 1000000000 items"),
    "nested loops": (
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        "too much work",
    ),
    "loop over a big string": ("{% for c in 'x' * 1000000 %}{% for d in 'y' * 1000 %}{% endfor %}{% endfor %}", "too much work"),
    "string multiplication": ("{{ 'a' * 1000000000 }}", "'*' would produce 1000000000"),
    "list multiplication": ("{{ [0] * 10**9 }}", "'*' would produce"),
    "power": ("{{ 9 ** (9 ** 9) }}", "'**' result"),
    "self recursion": ("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}", "nested deeper than"),
    "exponential macro": (
        "{% macro m(n) %}{% if n > 0 %}{% set a = m(n-1) %}{% set b = m(n-1) %}{% endif %}{% endmacro %}"
        "{% macro top() %}{% for i in range(30) %}{% set x = m(16) %}{% endfor %}{% endmacro %}{{ top() }}",
        "too much work",
    ),
    "center width": ("{{ 'x' | center(1000000000) }}", "center width"),
    "percent format width": ("{{ '%1000000000s' | format('x') }}", "format width"),
    "percent operator width": ("{{ '%1000000000s' % 'x' }}", "format width"),
    "str.format width": ("{{ '{:>1000000000}'.format('x') }}", "format width"),
    "str.ljust": ("{{ 'x'.ljust(1000000000) }}", "str.ljust width"),
    "namespace doubling": (
        "{% set ns = namespace(s='xxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "more than 1048576",
    ),
    "concat doubling": ("{% set a = 'x' * 1000000 %}{% set b = a ~ a %}", "'~' concatenation"),
    "replace bomb": ("{{ ('x' * 100000) | replace('', 'y' * 100000) }}", "replace would produce"),
    "join bomb": ("{{ range(10000) | map('string') | join('y' * 1000) }}", "join would produce"),
    "captured output bomb": (
        "{% set big = 'x' * 1000000 %}{% set s %}{% for i in range(100) %}{{ big }}{% endfor %}{% endset %}",
        "produced more than",
    ),
    "include": ("{% include 'other.html' %}", "no loader"),
    "lipsum": ("{{ lipsum(100000000) }}", "'lipsum' is undefined"),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("source, problem", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_template_fails_fast_with_a_clear_error(source: str, problem: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateRenderError) as err:
        render_html(source)
    assert problem in str(err.value)
    assert str(err.value).startswith("template t v1 html")
    assert time.perf_counter() - started < 5


def test_output_larger_than_the_part_bound_is_refused() -> None:
    source = "{% set big = 'x' * 1000000 %}{{ big }}{{ big }}"
    with pytest.raises(TemplateRenderError, match=f"larger than {MAX_PART_CHARS}"):
        render_html(source)


def test_output_just_under_the_bound_is_fine() -> None:
    assert len(render_html("{{ 'x' * 1000000 }}")) == 1_000_000


def test_legitimate_loops_and_formatting_still_work() -> None:
    html = render_html(
        "{% for item in items %}{{ loop.index }}/{{ loop.length }} {{ item.name | upper }} "
        "{{ '%.2f' | format(item.price) }} {{ '{:>6}'.format(item.sku) }};{% endfor %}"
        "{{ items | map(attribute='name') | join(', ') }}",
        {"items": [{"name": "pen", "price": 1.5, "sku": "A1"}, {"name": "ink", "price": 12, "sku": "B22"}]},
    )
    assert html == "1/2 PEN 1.50     A1;2/2 INK 12.00    B22;pen, ink"


def test_budget_is_per_render_not_per_template() -> None:
    compiled = compile_template(TemplateDefinition(id="t", subject="s", html="{% for i in range(9000) %}{% endfor %}ok"))
    for _ in range(20):
        assert compiled.render({}).html == "ok"
