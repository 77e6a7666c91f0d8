"""Properties of stack rendering over generated templates and values.

1. Whatever a template holds (YAML-ish text, expressions, blocks, comments, invalid syntax,
   undefined names, dunder attributes) and whatever values an instance gives, `substratus
   validate` answers with exit 0 or 3, never a traceback or an internal error, and every error
   names a file and a line: one of the stack's files, or the Stack document.
2. The line map is faithful: each rendered line maps to the template line that wrote it (a
   partial's own line for what a partial wrote), and the text is exactly what jinja2 renders
   with the same options.

Each example renders in a child process (~70 ms): the example counts are modest.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2.sandbox import SandboxedEnvironment

from substratus_cli.stacks import render
from tests.conftest import Result

Run = Callable[..., Result]
Draw = Callable[[st.SearchStrategy[Any]], Any]
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(autouse=True)
def quick_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBSTRATUS_RENDER_SECONDS", "2")


# 1. Nothing a template or a value holds breaks the command


DEFINITION = """\
parameters:
  n: {type: integer, default: 1}
  s: {type: string, default: a}
  flag: {type: boolean, default: false}
  items: {type: list, default: [1, 2]}
  m: {type: map, default: {key: v}}
outputs:
  greeting:
    value: "hello {{ values.s }}"
"""
YAMLISH = st.sampled_from([
    "apiVersion: substratus.ai/v1\n", "kind: Model\n", "kind: Dataset\n", "metadata:\n",
    "  name: {{ instance }}-m\n", "  name: fixed\n", "spec:\n",
    "  source: {huggingface: {name: gpt2}}\n", "  source:\n    path: ./data\n", "---\n",
    "# a comment\n", "- item\n", "key: value\n", "  nested: [1, 2]\n", ": bad\n", "\ttab: x\n",
    "\n", "  replicas: 2\n", "kind: Variable\n", "kind: Stack\n", "name: ${{ var.x }}\n",
    "a: [unclosed\n", "&anchor a: *anchor\n",
])
EXPRESSIONS = st.sampled_from([
    "{{ values.n }}", "{{ values.s }}", "{{ values.nope }}", "{{ instance }}", "{{ namespace }}",
    "{{ undefined_name }}", "{{ values.items|tojson }}", "{{ values.m|tojson }}",
    "{{ values.n * 2 }}", "{{ values.s|upper }}", "{{ 1 / 0 }}", "{{ values.n ** 100 }}",
    "{{ secret('a', 'b') }}", "{{ range(3)|list }}", "{{ values.__class__ }}",
    "{{ instance.__class__.__mro__ }}", "{{ values|attr('__dict__') }}", "{{ cycler.__init__ }}",
    "{{ self.__dict__ }}", "{{ lipsum() }}", "{{ values.items[5] }}", "{{ values.s ~ values.n }}",
    "{{ values.m.key }}", "{{ 'x' * values.n }}", "{{ '%s' % values.s }}", "{{ range }}",
    "{{ values.items|map('string')|join(',') }}", "{{ values.s|indent(values.n) }}",
    "{{ '{0.__class__}'.format(values) }}", "{{ values.n|center(values.n) }}",
    "{{ values.items|sum }}", "{{ values.m|dictsort }}", "{{ loop.index }}",
    "{{ values.flag and values.s or values.n }}", "{{ values.s.__len__() }}",
])
BLOCKS = st.sampled_from([
    "{% if values.flag %}", "{% else %}", "{% endif %}", "{% for x in values.items %}",
    "{% endfor %}", "{% set y = values.n %}", "{% include '_p.yaml.j2' %}",
    "{% include 'missing.j2' %}", "{% include '../stack.yaml' %}", "{% macro f() %}",
    "{% endmacro %}", "{{ f() }}", "{% raw %}", "{% endraw %}", "{% for i in range(values.n) %}",
    "{% set block %}", "{% endset %}", "{% filter upper %}", "{% endfilter %}",
    "{% import '_p.yaml.j2' as p %}", "{% extends '_p.yaml.j2' %}", "{%- if true -%}",
    "{{- values.s -}}",
])
COMMENTS = st.sampled_from(["{# c #}", "{# multi\nline #}", "{#- trimmed -#}"])
INVALID = st.sampled_from([
    "{{", "}}", "{%", "%}", "{{ 1 + }}", "{% if %}", "{% endfor %}", "{% nonsense %}",
    "{{ values.n | }}", "{#", "{{ 'unclosed }}", "{{ values..n }}", "{% for %}", "{{ ) }}",
])
PIECES = st.one_of(YAMLISH, EXPRESSIONS, BLOCKS, COMMENTS, INVALID, st.just("\n"),
                   st.just("    "), st.text(max_size=6))
TEMPLATES = st.lists(PIECES, max_size=18).map("".join)
SCALARS = st.none() | st.booleans() | st.integers(-3, 12) | st.just(10**30) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
INSTANCE_VALUES = st.dictionaries(st.sampled_from(["n", "s", "flag", "items", "m", "other"]),
                                  VALUES, max_size=4)
LOCATED = re.compile(r"^Error: (stacks/s/[^:\n]+|main\.yaml):\d+: ")


def write_workspace(root: Path, template: str, partial: str, values: dict[str, Any]) -> None:
    stack = root / "stacks" / "s"
    stack.mkdir(parents=True)
    (stack / "stack.yaml").write_text(DEFINITION)
    (stack / "t.yaml.j2").write_text(template)
    (stack / "_p.yaml.j2").write_text(partial)
    document = {"apiVersion": "substratus.ai/v1", "kind": "Stack", "metadata": {"name": "ft"},
                "spec": {"source": "./stacks/s", "values": values}}
    (root / "main.yaml").write_text("# the instance\n" + yaml.safe_dump(document))


@SETTINGS
@given(template=TEMPLATES, partial=TEMPLATES, values=INSTANCE_VALUES)
def test_validate_never_breaks_and_every_error_says_where(cli: Run, template: str, partial: str,
                                                          values: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        write_workspace(Path(folder), template, partial, values)
        result = cli("validate", folder)
    assert isinstance(result.code, int)
    assert result.code in (0, 3), result.output
    assert "Traceback" not in result.output, result.output
    assert "Internal error" not in result.output, result.output
    if result.code == 3:
        errors = [line for line in result.err.splitlines() if line.startswith("Error: ")]
        assert errors, result.err
        for error in errors:
            assert LOCATED.match(error), f"not located: {error}\n{template!r}\n{partial!r}"


# 2. The line map


@dataclasses.dataclass
class Template:
    """A template being written: its lines, and for each marker what line it must map to."""

    lines: list[str] = dataclasses.field(default_factory=list)

    @property
    def next_line(self) -> int:
        return len(self.lines) + 1

    def add(self, text: str) -> None:
        self.lines.append(text)

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# A partial whose lines name themselves (p1, p3, p5), with a block between.
PARTIAL = "p1\n  {% if true %}\np3 {{ 'x' }}\n{% endif %}\np5\n"
INDENTS = st.sampled_from(["", "  ", "\t"])


@st.composite
def body(draw: Draw, template: Template, depth: int = 0) -> None:
    """Lines of a template; each data line starts with `m<N>`, N being its own line number."""
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(
            ["line", "line", "expression", "multiline", "inline-if", "if", "for", "set", "comment",
             "raw", "include", "captured"] if depth < 3 else ["line", "expression"]))
        indent = draw(INDENTS)
        line = template.next_line
        if kind == "line":
            template.add(f"{indent}m{line}")
        elif kind == "expression":
            template.add(f"{indent}m{line} {{{{ {draw(st.integers(0, 99))} }}}} tail")
        elif kind == "multiline":
            template.add(f"m{line} {{{{ 'a\\nb\\nc' }}}}")
        elif kind == "inline-if":
            choice = draw(st.booleans())
            template.add(f"m{line} {{% if {choice} %}}yes{{% else %}}no{{% endif %}}")
        elif kind == "if":
            template.add(f"{indent}{{% if {draw(st.booleans())} %}}")
            draw(body(template, depth + 1))
            if draw(st.booleans()):
                template.add(f"{draw(INDENTS)}{{% else %}}")
                draw(body(template, depth + 1))
            template.add(f"{draw(INDENTS)}{{% endif %}}")
        elif kind == "for":
            template.add(f"{indent}{{% for i in range({draw(st.integers(0, 3))}) %}}")
            draw(body(template, depth + 1))
            template.add(f"{draw(INDENTS)}{{% endfor %}}")
        elif kind == "set":
            template.add(f"{indent}{{% set v = {draw(st.integers(0, 9))} %}}")
        elif kind == "comment":
            template.add(f"{indent}{{# a note #}}")
        elif kind == "raw":
            template.add("{% raw %}")
            template.add(f"m{template.next_line} {{{{ not rendered }}}}")
            template.add("{% endraw %}")
        elif kind == "include":
            template.add(f"{indent}{{% include '_p.yaml.j2' %}}")
        else:  # captured: written where it is used, its lines that line's
            template.add("{% set captured %}")
            template.add("c")
            template.add("c")
            template.add("{% endset %}")
            template.add(f"m{template.next_line} {{{{ captured }}}}")


@st.composite
def templates(draw: Draw) -> str:
    template = Template()
    draw(body(template))
    text = template.text
    return text if draw(st.booleans()) else text.rstrip("\n")


def plain_jinja(template: str) -> str:
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                               trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                               loader=jinja2.DictLoader({"t.yaml.j2": template,
                                                         "_p.yaml.j2": PARTIAL}))
    return env.get_template("t.yaml.j2").render({})


@SETTINGS
@given(template=templates())
def test_each_rendered_line_maps_to_the_template_line_that_wrote_it(template: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "t.yaml.j2").write_text(template)
        (Path(folder) / "_p.yaml.j2").write_text(PARTIAL)
        (Path(folder) / "stack.yaml").write_text("{}\n")
        result = render.render(Path(folder), {}, {})
    assert result.errors == [], result.errors
    [rendered] = result.files
    assert rendered.text == plain_jinja(template)
    lines = rendered.text.split("\n")
    assert len(rendered.lines) == len(lines)
    for text, (file, line) in zip(lines, rendered.lines, strict=True):
        markers = re.findall(r"([mp])(\d+)", text)
        if not markers:
            continue
        kind, number = markers[-1]
        assert (file, line) == ("t.yaml.j2" if kind == "m" else "_p.yaml.j2", int(number)), \
            f"{text!r} mapped to {file}:{line}\n{template}"
