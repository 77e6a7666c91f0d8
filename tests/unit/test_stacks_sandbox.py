"""Bad templates in a stack, through the real command line: escapes from the sandbox, the limits
(time, size, recursion, huge operands), files outside the stack's folder, syntax errors,
undefined names and schema errors in what a template renders. Each one ends in exit 3 with an
error that names the template's file:line (relative to the workspace) and the instance, never a
traceback, a hang or anything of Python's internals."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Result

# The Stack document is at line 2 of main.yaml (after a comment): its errors name main.yaml:2.
WORKSPACE = """\
# an instance of the stack under test
apiVersion: substratus.ai/v1
kind: Stack
metadata:
  name: ft
spec:
  source: ./stacks/s
  values:
    epochs: 2
"""
ORIGIN = 'in stack "ft" (main.yaml:2)'
DEFINITION = """\
parameters:
  epochs: {type: integer, default: 1}
"""
# Five lines of a valid resource: the line under test is line 6.
HEAD = """\
apiVersion: substratus.ai/v1
kind: Model
metadata:
  name: {{ instance }}-m
  labels:
"""
VALID_TAIL = """\
spec:
  source:
    scratch:
      config:
        n_layer: {{ values.epochs }}
"""
Run = Callable[..., Result]


@pytest.fixture(autouse=True)
def quick_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Templates that would run for ever are stopped after 2 s, not the default 10."""
    monkeypatch.setenv("SUBSTRATUS_RENDER_SECONDS", "2")


def workspace(root: Path, templates: dict[str, str], definition: str = DEFINITION) -> Path:
    """A workspace using the stack ./stacks/s, whose files are `templates` (name -> text)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.yaml").write_text(WORKSPACE)
    stack = root / "stacks" / "s"
    stack.mkdir(parents=True)
    (stack / "stack.yaml").write_text(definition)
    for name, text in templates.items():
        (stack / name).parent.mkdir(parents=True, exist_ok=True)
        (stack / name).write_text(text)
    return root


def probe(expression: str) -> str:
    """A template whose line 6 is `expression` (as a label's value)."""
    return HEAD + f"    probe: {expression}\n" + VALID_TAIL


def error_lines(result: Result) -> list[str]:
    return [line for line in result.err.splitlines() if line.startswith("Error: ")]


def assert_clean(result: Result) -> None:
    """Exit 3, and nothing of Python's own: no traceback, no internal error."""
    assert result.code == 3, result.output
    assert "Traceback" not in result.output, result.output
    assert "Internal error" not in result.output, result.output
    assert 'File "' not in result.output, result.output


def assert_refused(result: Result, where: str, *fragments: str, count: int = 1) -> str:
    """One error (or `count`) at stacks/s/`where` (FILE:LINE) holding `fragments`, followed by
    the instance that rendered it. Returns that error's line."""
    assert_clean(result)
    errors = error_lines(result)
    assert len(errors) == count, result.err
    prefix = f"Error: stacks/s/{where}: "
    found = [e for e in errors if e.startswith(prefix)]
    assert found, f"no error at {where}:\n{result.err}"
    for fragment in fragments:
        assert fragment in found[0], found[0]
    lines = result.err.splitlines()
    assert lines[lines.index(found[0]) + 1] == f"  {ORIGIN}", result.err
    return found[0]


# Escapes: attributes of Python's internals, whatever the way to reach them


ESCAPES = {
    "class-mro": ("''.__class__.__mro__", "access to attribute '__class__' of 'str' object"),
    "subclasses": ("().__class__.__base__.__subclasses__()", "'__class__'"),
    "cycler-globals": ("cycler.__init__.__globals__", "access to attribute '__init__'"),
    "joiner-globals": ("joiner.__init__.__globals__.os", "access to attribute '__init__'"),
    "template-context": ("self._TemplateReference__context",
                         "access to attribute '_TemplateReference__context'"),
    "namespace-init": ("namespace.__init__", "access to attribute '__init__'"),
    "attr-filter": ("''|attr('__class__')", "access to attribute '__class__'"),
    "attr-filter-chain": ("cycler|attr('__init__')|attr('__globals__')",
                          "access to attribute '__init__'"),
    "getitem-dunder": ("''['__class__']", "access to attribute '__class__'"),
    "range-self": ("range.__self__", "has no attribute '__self__'"),
    "underscore": ("values._private", "'_private'"),
    "format-method": ("'{0.__class__}'.format(1)", "access to attribute '__class__'"),
    "format-globals": ("'{0.__globals__}'.format(range)", "access to attribute '__globals__'"),
    "format-map": ("'{x.__class__}'.format_map({'x': 1})", "access to attribute '__class__'"),
    "percent-format-filter": ("'%s'|format(''.__class__)", "access to attribute '__class__'"),
    "loop-dunder": ("[1].__iter__", "access to attribute '__iter__'"),
}


@pytest.mark.parametrize("expression,fragment", ESCAPES.values(), ids=ESCAPES.keys())
def test_python_internals_are_out_of_reach(cli: Run, tmp_path: Path, expression: str,
                                           fragment: str) -> None:
    result = cli("validate", workspace(tmp_path, {"t.yaml.j2": probe(f"{{{{ {expression} }}}}")}))
    assert_refused(result, "t.yaml.j2:6", fragment)
    for leak in ("<module", "<class", "<function", "builtins", "__globals__ ="):
        assert leak not in result.out
    assert result.out == ""


def test_functions_and_objects_are_not_written_into_the_output(cli: Run,
                                                                 tmp_path: Path) -> None:
    """Their text holds an address in memory: a different rendering each time."""
    for expression, kind in (("range", "function"), ("cycler(1, 2)", "Cycler"),
                             ("[1]|map('string')", "generator"), ("[range]", "list"),
                             ("joiner()", "Joiner")):
        folder = tmp_path / kind
        result = cli("validate", workspace(folder, {"t.yaml.j2": probe(f"{{{{ {expression} }}}}")}))
        assert_refused(result, "t.yaml.j2:6", f"a {kind} is not a value that can be written")


def test_randomness_is_not_available(cli: Run, tmp_path: Path) -> None:
    result = cli("validate", workspace(tmp_path / "a", {"t.yaml.j2": probe("{{ [1, 2]|random }}")}))
    assert_refused(result, "t.yaml.j2:6", "template syntax error: No filter named 'random'")
    result = cli("validate", workspace(tmp_path / "b", {"t.yaml.j2": probe("{{ lipsum() }}")}))
    assert_refused(result, "t.yaml.j2:6", "undefined: 'lipsum' is undefined")


# Limits: time, size, recursion and operands that would take the machine


LIMITS = {
    "range": ("{{ range(10**9)|list }}", "Range too big"),
    "power": ("{{ 9**(9**9) }}", "number too large"),
    "power-chain": ("{{ 10**64**64**64 }}", "number too large"),
    "product": ("{{ (10**60)**60 * (10**60)**60 }}", "number too large"),
    "repeat": ("{{ 'x' * 10**10 }}", "result too large"),
    "repeat-list": ("{{ [0] * 10**9 }}", "result too large"),
    "concat": ("{{ ('x' * 10**7) + ('x' * 10**7) }}", "result too large"),
    "center": ("{{ 'x'|center(10**9) }}", "size argument too large"),
    "indent": ("{{ 'x'|indent(10**9) }}", "size argument too large"),
    "wordwrap": ("{{ 'x'|wordwrap(10**9) }}", "size argument too large"),
    "truncate": ("{{ 'x'|truncate(length=10**9) }}", "size argument too large"),
    "slice": ("{{ [1]|slice(10**9)|list }}", "count too large"),
    "batch": ("{{ [1]|batch(10**9, 0)|list }}", "count too large"),
    "ljust": ("{{ 'x'.ljust(10**9) }}", "width too large"),
    "zfill": ("{{ '1'.zfill(10**9) }}", "width too large"),
    "percent": ("{{ '%999999999s' % 'x' }}", "padding width or precision too large"),
    "percent-star": ("{{ '%*s' % (10**9, 'x') }}", "padding width or precision too large"),
    "percent-precision": ("{{ '%.999999999f' % 1.5 }}", "padding width or precision too large"),
    "format-filter": ("{{ '%999999999s'|format('x') }}", "padding width or precision too large"),
    "str-format": ("{{ '{:999999999}'.format('x') }}", "padding width or precision too large"),
    "str-format-nested": ("{{ '{0:{1}}'.format('x', 10**9) }}",
                          "padding width or precision too large"),
    "long-literal": ("{{ " + "9" * 5000 + " }}", "a number too large to write"),
    "macro-recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
                        "recursion too deep"),
    "output-size": ("{{ 'x' * 10000000 }}{{ 'y' * 10000000 }}",
                    "the output is larger than 10485760 characters"),
    "nested-loops": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                     "{% endfor %}", "rendering took longer than 2 s"),
    "loop-in-c": ("{{ ('a' * 5000000)|list|sort|sort|sort|sort|sort|sort|sort|sort|sort"
                  "|sort|sort|sort|sort|sort|sort|sort|sort|sort|sort|sort|length }}",
                  "rendering took longer than 2 s"),
}


@pytest.mark.parametrize("expression,fragment", LIMITS.values(), ids=LIMITS.keys())
def test_limits_stop_a_template_at_its_line(cli: Run, tmp_path: Path, expression: str,
                                            fragment: str) -> None:
    result = cli("validate", workspace(tmp_path, {"t.yaml.j2": probe(expression)}))
    assert_refused(result, "t.yaml.j2:6", f"refused by the sandbox: {fragment}")


def test_sizes_within_the_limits_render_as_jinja_renders_them(cli: Run, tmp_path: Path) -> None:
    """The checks refuse only what is too large: every sized filter, format and method works."""
    template = HEAD + "".join(f"    {key}: '{{{{ {expression} }}}}'\n" for key, expression in (
        ("wordwrap", "'ab cd'|wordwrap(2, wrapstring='|')"),
        ("truncate", "'abc def'|truncate(5, leeway=0)"),
        ("center", "'x'|center(5)"), ("indent", "'a'|indent(2, first=true)"),
        ("percent", "'%-4s|%.2f' % ('x', 1.5)"), ("format", "'%03d'|format(7)"),
        ("str-format", "'{:>4}{:{}}'.format('x', 'y', 3)"), ("ljust", "'x'.ljust(3) ~ '|'"),
        ("slice", "[1, 2, 3]|slice(2)|list|length"), ("batch", "[1, 2, 3]|batch(2)|list|length"),
        ("power", "2**100"), ("product", "(10**60) * (10**60)"),
        ("repeat", "'ab' * 3"))) + VALID_TAIL
    result = cli("render", workspace(tmp_path, {"t.yaml.j2": template}))
    assert result.code == 0, result.output
    for line in ("wordwrap: 'ab|cd'", "truncate: 'ab...'", "center: '  x  '", "indent: '  a'",
                 "percent: 'x   |1.50'", "format: '007'", "str-format: '   xy  '",
                 "ljust: 'x  |'", "slice: '2'", "batch: '2'", f"power: '{2**100}'",
                 f"product: '{10**120}'", "repeat: 'ababab'"):
        assert f"\n    {line}\n" in result.out, (line, result.out)


def test_a_power_tower_is_read_left_to_right_as_jinja_does(cli: Run, tmp_path: Path) -> None:
    """`9**9**9` is (9**9)**9 in jinja, a 75-digit number written at once; 9**(9**9) is refused."""
    result = cli("render", workspace(tmp_path, {"t.yaml.j2": probe("'{{ 9**9**9 }}'")}))
    assert result.code == 0, result.output
    assert f"    probe: '{(9**9)**9}'\n" in result.out


def test_a_loop_that_never_ends_in_a_partial_is_stopped_at_the_partial_line(
        cli: Run, tmp_path: Path) -> None:
    partial = "a: 1\n{% for i in range(100000) %}\n{% for j in range(100000) %}\n" \
              "{% set x = i * j %}\n{% endfor %}\n{% endfor %}\n"
    result = cli("validate", workspace(tmp_path, {
        "t.yaml.j2": HEAD + "    a: b\n{% include '_loop.yaml.j2' %}\n" + VALID_TAIL,
        "_loop.yaml.j2": partial}))
    # The line the loop was at when its time ran out: any of the loop's own lines (on a loaded
    # machine the limit may land between the `set` and the inner `for`).
    at = next((f"_loop.yaml.j2:{n}" for n in (2, 3, 4, 5) if f"_loop.yaml.j2:{n}:" in result.err),
              "_loop.yaml.j2:(none of the loop's lines)")
    error = assert_refused(result, at, "rendering took longer than 2 s")
    assert error.startswith(f"Error: stacks/s/{at}: refused by the sandbox")


def test_a_loop_that_never_ends_in_an_output_is_stopped_at_the_output(cli: Run,
                                                                         tmp_path: Path) -> None:
    definition = DEFINITION + "outputs:\n  model:\n    resource: Model/{{ instance }}-m\n" \
        "  forever:\n    value: \"{% for i in range(100000) %}{% for j in range(100000) %}" \
        "{% endfor %}{% endfor %}\"\n"
    result = cli("validate", workspace(tmp_path, {"t.yaml.j2": HEAD + "    a: b\n" + VALID_TAIL},
                                       definition))
    assert_clean(result)
    errors = error_lines(result)
    assert errors == ["Error: stacks/s/stack.yaml:7: outputs.forever: output forever: refused "
                      "by the sandbox: rendering took longer than 2 s"], result.err


def test_a_limit_names_the_line_after_many_lines_of_output(cli: Run, tmp_path: Path) -> None:
    body = "".join(f"    l{i}: '{i}'\n" for i in range(6, 40))
    template = HEAD + body + "{% for i in range(3) %}\n    r{{ i }}: x\n{% endfor %}\n" + \
        "    big: {{ 'x' * 10000000 }}{{ 'x' * 10000000 }}\n"
    result = cli("validate", workspace(tmp_path, {"t.yaml.j2": template}))
    assert_refused(result, "t.yaml.j2:43", "the output is larger than")


def test_a_sandbox_run_as_a_command_never_hangs_or_shows_a_traceback(tmp_path: Path) -> None:
    """The installed command, as a user runs it: a loop that never ends and an escape."""
    command = Path(sys.executable).with_name("substratus")
    workspace(tmp_path, {
        "a.yaml.j2": probe("{% for i in range(100000) %}{% for j in range(100000) %}"
                           "{% endfor %}{% endfor %}"),
        "b.yaml.j2": probe("{{ cycler.__init__.__globals__.os.system('touch pwned') }}")})
    environment = {**os.environ, "SUBSTRATUS_RENDER_SECONDS": "2"}
    # A hang ends in TimeoutExpired: the test fails.
    done = subprocess.run([str(command), "validate", str(tmp_path)], capture_output=True,
                          text=True, timeout=60, env=environment, check=False)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and "Internal error" not in done.stderr
    # A limit stops the whole instance: the loop is reported, the file after it not rendered.
    assert done.stderr.startswith(
        "Error: stacks/s/a.yaml.j2:6: refused by the sandbox: rendering took longer than 2 s\n"
        f"  {ORIGIN}\n"), done.stderr
    assert not (tmp_path / "pwned").exists()


def test_an_escape_through_the_installed_command(tmp_path: Path) -> None:
    command = Path(sys.executable).with_name("substratus")
    workspace(tmp_path, {"b.yaml.j2": probe(
        "{{ cycler.__init__.__globals__.os.system('touch pwned') }}")})
    done = subprocess.run([str(command), "validate", str(tmp_path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 3
    assert done.stderr == (
        "Error: stacks/s/b.yaml.j2:6: refused by the sandbox: access to attribute '__init__' of "
        f"'type' object is unsafe.\n  {ORIGIN}\n1 error in the resource files.\n")
    assert not (tmp_path / "pwned").exists()


# Files: only the stack's own folder


def test_include_and_import_reach_only_the_stack_folder(cli: Run, tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml.j2"
    secret.write_text("password: hunter2\n{% macro m() %}hunter2{% endmacro %}\n")
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "stacks").mkdir()
    cases = {
        "parent": "{% include '../secret.yaml.j2' %}",
        "parent-of-workspace": "{% include '../../../secret.yaml.j2' %}",
        "absolute": f"{{% include '{secret}' %}}",
        "dot": "{% include './_p.yaml.j2' %}",
        "import": "{% import '../../../secret.yaml.j2' as s %}",
        "from-import": f"{{% from '{secret}' import m %}}",
        "extends": "{% extends '../../../secret.yaml.j2' %}",
        "dynamic": "{% include '../' ~ '../../secret.yaml.j2' %}",
        "link": "{% include '_link.yaml.j2' %}",
        "linked-folder": "{% include 'linked/secret.yaml.j2' %}",
    }
    for case, statement in cases.items():
        root = tmp_path / case
        workspace(root, {"t.yaml.j2": HEAD + f"{statement}\n" + VALID_TAIL,
                         "_p.yaml.j2": "    p: 1\n"})
        (root / "stacks" / "s" / "_link.yaml.j2").symlink_to(secret)
        (root / "stacks" / "s" / "linked").symlink_to(tmp_path, target_is_directory=True)
        result = cli("validate", root)
        name = statement.split("'")[1] if case != "dynamic" else "../../../secret.yaml.j2"
        assert_refused(result, "t.yaml.j2:6",
                       f"template not found in the stack's folder: {name}")
        assert "hunter2" not in result.output
        rendered = cli("render", root)
        assert rendered.code == 3 and "hunter2" not in rendered.output


def test_a_resource_file_that_links_outside_the_folder_is_refused(cli: Run,
                                                                   tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("password: hunter2\n")
    root = workspace(tmp_path / "ws", {"t.yaml.j2": probe("ok") + "\n"})
    (root / "stacks" / "s" / "leak.yaml").symlink_to(secret)
    (root / "stacks" / "s" / "leak2.yaml.j2").symlink_to(secret)
    result = cli("validate", root)
    assert_clean(result)
    errors = error_lines(result)
    refused = "refused by the sandbox: a link to a file outside the stack's folder"
    assert errors == [f"Error: stacks/s/leak.yaml:1: {refused}, or not a file",
                      f"Error: stacks/s/leak2.yaml.j2:1: {refused}, or not a file"], result.err
    assert "hunter2" not in result.output


def test_a_link_inside_the_folder_is_followed(cli: Run, tmp_path: Path) -> None:
    root = workspace(tmp_path, {"_real.yaml.j2": "    probe: linked\n",
                                "t.yaml.j2": HEAD + "{% include '_alias.yaml.j2' %}\n" +
                                VALID_TAIL})
    (root / "stacks" / "s" / "_alias.yaml.j2").symlink_to(root / "stacks" / "s" /
                                                          "_real.yaml.j2")
    result = cli("render", root)
    assert result.code == 0, result.output
    assert "    probe: linked\n" in result.out


def test_a_template_that_is_not_utf8_is_reported_at_its_file(cli: Run, tmp_path: Path) -> None:
    root = workspace(tmp_path, {"t.yaml.j2": probe("ok")})
    (root / "stacks" / "s" / "t.yaml.j2").write_bytes(b"a: \xff\xfe\n")
    assert_refused(cli("validate", root), "t.yaml.j2:1", "not UTF-8 text")


# Syntax errors and undefined names, at their file:line (a partial's own)


def test_a_syntax_error_names_its_line(cli: Run, tmp_path: Path) -> None:
    result = cli("validate", workspace(tmp_path, {"t.yaml.j2": probe("{{ values.epochs + }}")}))
    assert_refused(result, "t.yaml.j2:6", "template syntax error: unexpected 'end of print")


def test_an_unclosed_block_names_the_end_of_the_template(cli: Run, tmp_path: Path) -> None:
    template = HEAD + "{% if values.epochs %}\n    a: b\n" + VALID_TAIL
    result = cli("validate", workspace(tmp_path, {"t.yaml.j2": template}))
    assert_refused(result, "t.yaml.j2:12", "template syntax error: Unexpected end of template",
                   "'endif'")


def test_an_unknown_filter_names_its_line(cli: Run, tmp_path: Path) -> None:
    result = cli("validate", workspace(tmp_path, {"t.yaml.j2": probe("{{ 1|nofilter }}")}))
    assert_refused(result, "t.yaml.j2:6", "No filter named 'nofilter'")


def test_undefined_names_are_errors_at_their_line(cli: Run, tmp_path: Path) -> None:
    for case, expression, message in (
            ("name", "{{ epochs }}", "undefined: 'epochs' is undefined"),
            ("value", "{{ values.epoch }}", "undefined: 'dict object' has no attribute 'epoch'"),
            ("item", "{{ values['size'] }}", "has no attribute 'size'"),
            ("in-string", "x-{{ nope }}-y", "'nope' is undefined"),
            ("in-if", "{% if nope %}x{% endif %}", "'nope' is undefined"),
            ("in-for", "{% for x in nope %}{% endfor %}", "'nope' is undefined"),
            ("call", "{{ nope() }}", "'nope' is undefined"),
    ):
        result = cli("validate", workspace(tmp_path / case, {"t.yaml.j2": probe(expression)}))
        assert_refused(result, "t.yaml.j2:6", message)


def test_an_error_after_a_loop_and_in_a_macro_names_the_right_line(cli: Run,
                                                                   tmp_path: Path) -> None:
    loop = HEAD + "{% for i in range(3) %}\n    l{{ i }}: x\n{% endfor %}\n    z: {{ nope }}\n"
    result = cli("validate", workspace(tmp_path / "loop", {"t.yaml.j2": loop}))
    assert_refused(result, "t.yaml.j2:9", "'nope' is undefined")
    macro = HEAD + "{% macro label(x) %}\n    {{ x }}: {{ x.missing }}\n{% endmacro %}\n" \
        "    a: b\n{{ label('k') }}\n"
    result = cli("validate", workspace(tmp_path / "macro", {"t.yaml.j2": macro}))
    assert_refused(result, "t.yaml.j2:7", "has no attribute 'missing'")


def test_errors_in_a_partial_name_the_partial_line(cli: Run, tmp_path: Path) -> None:
    template = HEAD + "    a: b\n{% include '_labels.yaml.j2' %}\n" + VALID_TAIL
    for case, partial, where, message in (
            ("undefined", "    x: 1\n    y: 2\n    z: {{ nope }}\n", "_labels.yaml.j2:3",
             "'nope' is undefined"),
            ("syntax", "    x: 1\n    y: {% if %}\n", "_labels.yaml.j2:2",
             "template syntax error: Expected an expression"),
            ("escape", "\n\n\n    x: {{ ''.__class__ }}\n", "_labels.yaml.j2:4",
             "access to attribute '__class__'"),
            ("limit", "    x: {{ 9**(9**9) }}\n", "_labels.yaml.j2:1", "number too large"),
            ("nested", "    x: 1\n{% include '_deeper.yaml.j2' %}\n", "_deeper.yaml.j2:2",
             "'deep' is undefined"),
    ):
        root = workspace(tmp_path / case, {"t.yaml.j2": template, "_labels.yaml.j2": partial,
                                           "_deeper.yaml.j2": "    d: 1\n    e: {{ deep }}\n"})
        assert_refused(cli("validate", root), where, message)


def test_a_template_in_a_subfolder_is_named_with_its_folder(cli: Run, tmp_path: Path) -> None:
    result = cli("validate", workspace(tmp_path, {"sub/dir/t.yaml.j2": probe("{{ nope }}")}))
    assert_refused(result, "sub/dir/t.yaml.j2:6", "'nope' is undefined")


def test_templates_too_deep_for_python_are_syntax_errors_at_their_line(cli: Run,
                                                                       tmp_path: Path) -> None:
    loops = "".join(f"{{% for i{k} in [1] %}}" for k in range(30)) + "x" + \
        "{% endfor %}" * 30
    result = cli("validate", workspace(tmp_path / "loops", {"t.yaml.j2": probe(loops)}))
    assert_refused(result, "t.yaml.j2:6", "template syntax error: the template is too complex")
    parens = "{{ " + "(" * 60 + "1" + ")" * 60 + " }}"
    result = cli("validate", workspace(tmp_path / "parens", {"t.yaml.j2": probe(parens)}))
    assert_refused(result, "t.yaml.j2:6", "recursion too deep")


def test_a_template_including_itself_is_stopped(cli: Run, tmp_path: Path) -> None:
    template = HEAD + "    a: b\n{% include 't.yaml.j2' %}\n"
    result = cli("validate", workspace(tmp_path, {"t.yaml.j2": template}))
    assert_refused(result, "t.yaml.j2:7", "recursion too deep")


def test_every_failing_file_is_reported_not_only_the_first(cli: Run, tmp_path: Path) -> None:
    result = cli("validate", workspace(tmp_path, {"a.yaml.j2": probe("{{ nope }}"),
                                                  "b.yaml.j2": probe("{{ ''.__class__ }}"),
                                                  "c.yaml.j2": probe("{% if %}")}))
    assert_clean(result)
    assert [e.split(": ")[1] for e in error_lines(result)] == \
        ["stacks/s/a.yaml.j2:6", "stacks/s/b.yaml.j2:6", "stacks/s/c.yaml.j2:6"]


# What a template renders is checked like a file written by hand, at the template's lines


def test_a_schema_error_is_reported_at_the_template_line(cli: Run, tmp_path: Path) -> None:
    template = HEAD + "    a: b\n" + VALID_TAIL + "  replicas: {{ values.epochs }}\n" + \
        "  nope: 1\n"
    result = cli("validate", workspace(tmp_path, {"t.yaml.j2": template}))
    assert_clean(result)
    errors = error_lines(result)
    assert errors == [
        'Error: stacks/s/t.yaml.j2:12: spec.replicas: unknown field "replicas"; allowed: image, '
        "build, command, env, params, resources, source, training, size",
        'Error: stacks/s/t.yaml.j2:13: spec.nope: unknown field "nope"; allowed: image, build, '
        "command, env, params, resources, source, training, size"], result.err
    assert result.err.count(f"\n  {ORIGIN}\n") == 2


def test_a_wrong_value_from_the_instance_is_reported_at_the_template_line(
        cli: Run, tmp_path: Path) -> None:
    template = HEAD + "    a: b\n" + "spec:\n  source:\n    huggingface:\n" + \
        "      name: {{ values.epochs }}\n      revision: [a, b]\n"
    result = cli("validate", workspace(tmp_path, {"t.yaml.j2": template}))
    assert_clean(result)
    assert any(e.startswith("Error: stacks/s/t.yaml.j2:11: spec.source.huggingface.revision:")
               for e in error_lines(result)), result.err
    assert f"\n  {ORIGIN}\n" in result.err


def test_invalid_yaml_from_a_template_is_reported_at_the_template_line(
        cli: Run, tmp_path: Path) -> None:
    template = HEAD + "    a: b\n" + VALID_TAIL + "  params: {{ '[unclosed' }}\n"
    result = cli("validate", workspace(tmp_path, {"t.yaml.j2": template}))
    assert_refused(result, "t.yaml.j2:12", "invalid YAML")


def test_a_stack_cannot_declare_variables_or_use_workspace_references(
        cli: Run, tmp_path: Path) -> None:
    template = HEAD + "    a: b\n" + "spec:\n  source:\n    huggingface:\n" + \
        "      name: {{ '${{ var.project }}' }}\n---\napiVersion: substratus.ai/v1\n" \
        "kind: Variable\nmetadata: {name: x}\nspec: {type: string}\n"
    result = cli("validate", workspace(tmp_path, {"t.yaml.j2": template}))
    assert_clean(result)
    assert error_lines(result) == [
        "Error: stacks/s/t.yaml.j2:10: spec.source.huggingface.name: ${{ var.project }} is not "
        "visible inside a stack; pass it in the stack's values",
        "Error: stacks/s/t.yaml.j2:12: a stack cannot declare a Variable"], result.err
