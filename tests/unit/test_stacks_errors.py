"""Mistakes in how a workspace uses stacks and variables, through the real command line: a
`Stack` document's values, its source, cycles between instances, addresses two instances both
render, a broken stack.yaml; variables missing, undeclared or of the wrong type, from --var,
--var-file and SUBSTRATUS_VAR_, and which of them wins. Each is exit 3 with file:line, never a
traceback."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Result

Run = Callable[..., Result]

DEFINITION = """\
description: a model sized by its values
parameters:
  epochs:
    type: integer
    default: 3
    minimum: 1
    maximum: 10
  size:
    enum: [small, large]
    default: small
  model_name:
    pattern: "[a-z0-9-]+"
  tags:
    type: list
    default: []
outputs:
  model:
    resource: Model/{{ instance }}-m
  greeting:
    value: "hello {{ values.size }}"
"""
TEMPLATE = """\
apiVersion: substratus.ai/v1
kind: Model
metadata:
  name: {{ instance }}-m
  labels: {size: {{ values.size }}, name: {{ values.model_name }}}
spec:
  source:
    scratch:
      config:
        n_layer: {{ values.epochs }}
"""


@pytest.fixture(autouse=True)
def quick_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBSTRATUS_RENDER_SECONDS", "2")
    for name in ("SUBSTRATUS_STACKS_PATH", "SUBSTRATUS_VAR_project", "SUBSTRATUS_VAR_replicas",
                 "SUBSTRATUS_VAR_zones"):
        monkeypatch.delenv(name, raising=False)


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def stack_folder(root: Path, name: str = "s", definition: str = DEFINITION,
                 template: str = TEMPLATE) -> None:
    write(root, f"stacks/{name}/stack.yaml", definition)
    write(root, f"stacks/{name}/m.yaml.j2", template)


def instance(name: str, values: str = "", source: str = "./stacks/s") -> str:
    """A Stack document (8 lines, values starting at line 8 when given)."""
    text = f"apiVersion: substratus.ai/v1\nkind: Stack\nmetadata:\n  name: {name}\nspec:\n" \
           f"  source: {source}\n"
    if values:
        text += "  values:\n" + textwrap.indent(textwrap.dedent(values), "    ")
    return text


def errors(result: Result) -> list[str]:
    assert result.code == 3, result.output
    assert "Traceback" not in result.output and "Internal error" not in result.output
    return [line.removeprefix("Error: ") for line in result.err.splitlines()
            if line.startswith("Error: ")]


# A Stack document's values


def test_an_unknown_parameter_suggests_the_closest(cli: Run, tmp_path: Path) -> None:
    stack_folder(tmp_path)
    write(tmp_path, "main.yaml", instance("ft", "model_name: m\nepoch: 5\ncolour: red\n"))
    assert errors(cli("validate", tmp_path)) == [
        'main.yaml:9: spec.values.epoch: unknown parameter "epoch" (did you mean "epochs"?)',
        'main.yaml:10: spec.values.colour: unknown parameter "colour"; parameters: epochs, '
        "size, model_name, tags"]


@pytest.mark.parametrize("values,message", [
    ('epochs: "5"', 'spec.values.epochs: expected an integer, got the string "5"'),
    ("epochs: 2.5", "spec.values.epochs: expected an integer, got the number 2.5"),
    ("epochs: true", "spec.values.epochs: expected an integer, got a boolean"),
    ("tags: solo", 'spec.values.tags: expected a list, got the string "solo"'),
    ("size: medium", 'spec.values.size: expected one of "small", "large", got "medium"'),
    ("model_name: Bad_Name", "spec.values.model_name: \"Bad_Name\" does not match the pattern "
                             "'[a-z0-9-]+'"),
    ("model_name: ok-but too", "does not match the pattern"),
    ("epochs: 0", "spec.values.epochs: 0 is less than the minimum 1"),
    ("epochs: 11", "spec.values.epochs: 11 is more than the maximum 10"),
    ("model_name: [a]", "spec.values.model_name: expected a string, got a list"),
], ids=["string-for-integer", "float-for-integer", "bool-for-integer", "string-for-list",
        "enum", "pattern", "pattern-whole-value", "minimum", "maximum", "list-for-string"])
def test_a_value_that_fails_its_parameter_is_reported_at_its_line(
        cli: Run, tmp_path: Path, values: str, message: str) -> None:
    stack_folder(tmp_path)
    given = values if values.startswith("model_name") else f"model_name: ok\n{values}"
    write(tmp_path, "main.yaml", instance("ft", given + "\n"))
    found = errors(cli("validate", tmp_path))
    assert len(found) == 1, found
    line = 8 if values.startswith("model_name") else 9
    assert found[0].startswith(f"main.yaml:{line}: "), found
    assert message in found[0]


def test_missing_required_parameters_are_listed_together(cli: Run, tmp_path: Path) -> None:
    definition = DEFINITION.replace("  tags:\n    type: list\n    default: []\n",
                                    "  tags:\n    type: list\n")
    stack_folder(tmp_path, definition=definition)
    write(tmp_path, "main.yaml", "# two instances\n---\n" + instance("a", "size: large\n") +
          "---\n" + instance("b"))
    assert errors(cli("validate", tmp_path)) == [
        "main.yaml:9: spec.values: required parameters not given: model_name, tags",
        "main.yaml:16: spec.values: required parameters not given: model_name, tags"]


def test_a_stack_that_does_not_exist(cli: Run, tmp_path: Path) -> None:
    write(tmp_path, "main.yaml", instance("a", source="./stacks/nope") + "---\n" +
          instance("b", source="no-such-stack") + "---\n" +
          instance("c", source="./model.yaml"))
    write(tmp_path, "model.yaml", "apiVersion: substratus.ai/v1\nkind: Model\n"
          "metadata: {name: x}\nspec: {source: {huggingface: {name: gpt2}}}\n")
    found = errors(cli("validate", tmp_path))
    assert [f.split(": ")[0:2] for f in found] == [["main.yaml:6", "spec.source"],
                                                   ["main.yaml:13", "spec.source"],
                                                   ["main.yaml:20", "spec.source"]], found
    assert "stack './stacks/nope' not found: no stack.yaml in " in found[0]
    assert "stack 'no-such-stack' not found: not a shipped stack (shipped: " \
           "finetune-and-serve, gke-platform, notebook); a folder of your own is written as a " \
           "path, e.g. ./stacks/NAME" in found[1]
    assert "stack './model.yaml' not found" in found[2]


def test_the_stack_document_itself(cli: Run, tmp_path: Path) -> None:
    stack_folder(tmp_path)
    write(tmp_path, "main.yaml", """\
        apiVersion: substratus.ai/v1
        kind: Stack
        metadata:
          name: Bad_Name
        spec:
          source: ./stacks/s
          values: [1]
        ---
        apiVersion: substratus.ai/v1
        kind: Stack
        metadata:
          name: nosource
        spec:
          values: {}
        ---
        apiVersion: substratus.ai/v1
        kind: Stack
        metadata:
          name: nosource
        spec:
          source: ./stacks/s
        ---
        apiVersion: substratus.ai/v1
        kind: Stack
        metadata:
          name: extra
        spec:
          source: ./stacks/s
          value: {model_name: m}
        ---
        apiVersion: substratus.ai/v2
        kind: Stack
        metadata:
          name: version
          owner: me
        spec:
          source: ./stacks/s
        """)
    assert errors(cli("validate", tmp_path)) == [
        "main.yaml:4: metadata.name: invalid name 'Bad_Name': use at most 63 lowercase letters, "
        "digits and '-', starting and ending with a letter or digit",
        "main.yaml:7: spec.values: expected a mapping of parameter values",
        "main.yaml:13: spec.source: required field is missing: the stack's folder (./PATH) or "
        "the name of a shipped stack",
        'main.yaml:19: metadata.name: duplicate Stack "nosource" (first defined at main.yaml:9)',
        "main.yaml:27: spec.values: required parameter not given: model_name",
        'main.yaml:29: spec.value: unknown field "value"; allowed: source, values',
        'main.yaml:31: apiVersion: expected apiVersion "substratus.ai/v1"',
        'main.yaml:35: metadata.owner: unknown field "owner"',
        # ... and the rest of that document is checked all the same.
        "main.yaml:36: spec.values: required parameter not given: model_name"]


# Instances together


def test_instances_that_use_each_other_outputs_in_a_cycle(cli: Run, tmp_path: Path) -> None:
    stack_folder(tmp_path)
    write(tmp_path, "main.yaml", instance("a", 'model_name: "${{ stack.b.greeting }}"\n') +
          "---\n" + instance("b", 'model_name: "${{ stack.c.greeting }}"\n') + "---\n" +
          instance("c", 'model_name: "${{ stack.a.greeting }}"\n') + "---\n" +
          instance("d", 'model_name: "${{ stack.a.greeting }}"\n'))
    found = errors(cli("validate", tmp_path))
    cycle = "spec.values: stack instances use each other's outputs in a cycle: a -> b -> c -> a"
    assert found[:3] == [f"main.yaml:7: {cycle}", f"main.yaml:16: {cycle}",
                         f"main.yaml:25: {cycle}"], found
    # The instance that uses one of the cycle is not rendered either, at its own line.
    assert found[3:] and all(f.startswith("main.yaml:35: spec.values.model_name: ")
                             for f in found[3:]), found


def test_an_instance_using_its_own_output(cli: Run, tmp_path: Path) -> None:
    stack_folder(tmp_path)
    write(tmp_path, "main.yaml", instance("a", 'model_name: "${{ stack.a.greeting }}"\n'))
    assert errors(cli("validate", tmp_path)) == [
        "main.yaml:7: spec.values: stack instances use each other's outputs in a cycle: a -> a"]


def test_two_instances_rendering_the_same_address(cli: Run, tmp_path: Path) -> None:
    stack_folder(tmp_path, template=TEMPLATE.replace("{{ instance }}-m", "fixed"),
                 definition=DEFINITION.replace("{{ instance }}-m", "fixed"))
    write(tmp_path, "main.yaml", instance("a", "model_name: m\n") + "---\n" +
          instance("b", "model_name: m\n"))
    found = errors(cli("validate", tmp_path))
    assert len(found) == 1, found
    assert found[0] == ("stacks/s/m.yaml.j2:4: metadata.name: duplicate Model/default/fixed "
                        '(first defined at stacks/s/m.yaml.j2:1, in stack "a" (main.yaml:1))')
    assert '  in stack "b" (main.yaml:10)' in cli("validate", tmp_path).err


def test_a_broken_definition_is_reported_once_for_all_its_instances(cli: Run,
                                                                    tmp_path: Path) -> None:
    stack_folder(tmp_path, definition="parameters:\n  a: {type: text}\n", template="{}\n")
    write(tmp_path, "main.yaml", instance("a") + "---\n" + instance("b"))
    found = errors(cli("validate", tmp_path))
    assert len(found) == 1 and found[0].startswith("stacks/s/stack.yaml:2: parameters.a.type:")


def test_an_instance_rendering_an_address_the_workspace_declares(cli: Run,
                                                                 tmp_path: Path) -> None:
    stack_folder(tmp_path)
    write(tmp_path, "main.yaml", instance("a", "model_name: m\n"))
    write(tmp_path, "model.yaml", "# mine\napiVersion: substratus.ai/v1\nkind: Model\n"
          "metadata: {name: a-m}\nspec: {source: {huggingface: {name: gpt2}}}\n")
    found = errors(cli("validate", tmp_path))
    assert found == ["stacks/s/m.yaml.j2:4: metadata.name: duplicate Model/default/a-m (first "
                     "defined at model.yaml:2)"], found


def test_references_to_instances_and_outputs_that_do_not_exist(cli: Run,
                                                               tmp_path: Path) -> None:
    stack_folder(tmp_path)
    write(tmp_path, "main.yaml", instance("a", "model_name: m\n"))
    write(tmp_path, "uses.yaml", """\
        apiVersion: substratus.ai/v1
        kind: Model
        metadata: {name: one}
        spec: {source: {huggingface: {name: "${{ stack.nope.model }}"}}}
        ---
        apiVersion: substratus.ai/v1
        kind: Model
        metadata: {name: two}
        spec: {source: {huggingface: {name: "${{ stack.a.modle }}"}}}
        """)
    assert errors(cli("validate", tmp_path)) == [
        'uses.yaml:4: spec.source.huggingface.name: no Stack named "nope"',
        'uses.yaml:9: spec.source.huggingface.name: stack "a" has no output "modle" (outputs: '
        "greeting, model)"]


# A broken stack.yaml, reported in it


@pytest.mark.parametrize("definition,expected", [
    ("parameters:\n  epochs:\n    type: integer\n    default: three\n",
     ['stacks/s/stack.yaml:2: parameters.epochs: default "three": expected an integer, got the '
      'string "three"']),
    ("parameters:\n  size:\n    tpye: string\n",
     ['stacks/s/stack.yaml:3: parameters.size.tpye: unknown field "tpye"']),
    ("paramters: {}\n", ['stacks/s/stack.yaml:1: paramters: unknown field "paramters"']),
    ("parameters:\n  n: {type: integer, pattern: x}\n",
     ["stacks/s/stack.yaml:2: parameters.n: pattern applies to string parameters only"]),
    ("parameters:\n  n: {type: string, minimum: 1}\n",
     ["stacks/s/stack.yaml:2: parameters.n: minimum and maximum apply to number and integer "
      "parameters only"]),
    ("parameters:\n  n: {pattern: '('}\n",
     ["stacks/s/stack.yaml:2: parameters.n: invalid pattern '(': missing ), unterminated "
      "subpattern at position 0"]),
    ("parameters:\n  1n: {}\n",
     ["stacks/s/stack.yaml:1: invalid parameter name '1n': use letters, digits and _, not "
      "starting with a digit"]),
    ("outputs:\n  o: {value: x, resource: Model/y}\n",
     ["stacks/s/stack.yaml:2: outputs.o: give exactly one of value, resource"]),
    ("outputs:\n  o: {value: x, field: endpoint}\n",
     ["stacks/s/stack.yaml:2: outputs.o: field needs resource"]),
    ("- a list\n", ["stacks/s/stack.yaml:1: expected a mapping with parameters and outputs"]),
], ids=["bad-default", "unknown-field-in-parameter", "unknown-top-field", "pattern-on-integer",
        "minimum-on-string", "bad-pattern", "bad-name", "two-kinds-of-output",
        "field-without-resource", "not-a-mapping"])
def test_a_broken_stack_definition(cli: Run, tmp_path: Path, definition: str,
                                   expected: list[str]) -> None:
    stack_folder(tmp_path, definition=definition, template="{}\n")
    write(tmp_path, "main.yaml", instance("a"))
    assert errors(cli("validate", tmp_path)) == expected


def test_a_stack_definition_that_is_not_yaml(cli: Run, tmp_path: Path) -> None:
    stack_folder(tmp_path, definition="parameters:\n  a: [1\n", template="{}\n")
    write(tmp_path, "main.yaml", instance("a"))
    found = errors(cli("validate", tmp_path))
    assert "stacks/s/stack.yaml:3: invalid YAML: while parsing a flow sequence; expected ',' " \
           "or ']', but got '<stream end>'" in found


def test_an_output_that_names_no_resource_of_the_stack(cli: Run, tmp_path: Path) -> None:
    stack_folder(tmp_path, definition=DEFINITION.replace("Model/{{ instance }}-m",
                                                         "Model/{{ instance }}-other"))
    write(tmp_path, "main.yaml", "\n" + instance("a", "model_name: m\n"))
    assert errors(cli("validate", tmp_path)) == [
        "stacks/s/stack.yaml:18: outputs.model.resource: output model: the stack renders no "
        "'Model/a-other' (expected Kind/name of one of its resources, as rendered)"]
    assert 'in stack "a" (main.yaml:2)' in cli("validate", tmp_path).err


def test_an_output_template_that_fails(cli: Run, tmp_path: Path) -> None:
    stack_folder(tmp_path, definition=DEFINITION.replace('"hello {{ values.size }}"',
                                                         '"hello {{ values.sise }}"'))
    write(tmp_path, "main.yaml", instance("a", "model_name: m\n"))
    result = cli("validate", tmp_path)
    assert errors(result) == [
        "stacks/s/stack.yaml:20: outputs.greeting: output greeting: undefined: 'dict object' "
        "has no attribute 'sise'"]
    assert 'in stack "a" (main.yaml:1)' in result.err


# Variables


VARIABLES = """\
apiVersion: substratus.ai/v1
kind: Variable
metadata:
  name: project
spec:
  type: string
  pattern: "[a-z]+"
---
apiVersion: substratus.ai/v1
kind: Variable
metadata:
  name: replicas
spec:
  type: integer
  minimum: 1
---
apiVersion: substratus.ai/v1
kind: Variable
metadata:
  name: zones
spec:
  type: list
  default: [a]
"""
USES = """\
apiVersion: substratus.ai/v1
kind: Model
metadata:
  name: m-${{ var.project }}
spec:
  source: {huggingface: {name: "${{ var.project }}/${{ var.replicas }}"}}
"""


def variables_workspace(root: Path) -> Path:
    write(root, "ws/variables.yaml", VARIABLES)
    write(root, "ws/uses.yaml", USES)
    return root / "ws"


def test_missing_required_variables_are_listed_together(cli: Run, tmp_path: Path) -> None:
    result = cli("validate", variables_workspace(tmp_path))
    assert errors(result) == [
        'variables.yaml:4: metadata.name: variable "project" is required and has no value',
        'variables.yaml:12: metadata.name: variable "replicas" is required and has no value']
    assert "  give it with --var project=VALUE, in a --var-file, or as SUBSTRATUS_VAR_project" \
        in result.err


def test_every_mistake_in_given_variables_is_reported_together(cli: Run, tmp_path: Path) -> None:
    workdir = variables_workspace(tmp_path)
    values = write(tmp_path, "values.yaml", "project: Upper\nreplica: 2\n")
    found = errors(cli("validate", workdir, "--var-file", values, "--var", "replicas=many",
                       "--var", "zone=[b]"))
    assert sorted(found) == sorted([
        '--var zone: value for undeclared variable "zone" (did you mean "zones"?)',
        f'{values}:2: replica: value for undeclared variable "replica" (did you mean '
        '"replicas"?)',
        '--var replicas: variable "replicas": expected an integer, got the string "many"',
        f'{values}:1: project: variable "project": "Upper" does not match the pattern '
        "'[a-z]+'"]), found


@pytest.mark.parametrize("how", ["var", "var-file", "environment"])
def test_a_value_of_the_wrong_type_names_where_it_was_given(
        cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    workdir = variables_workspace(tmp_path)
    args: list[str | Path] = ["--var", "project=abc"]
    if how == "var":
        args += ["--var", "replicas=[1, 2]"]
        where = "--var replicas"
        got = "a list"
    elif how == "var-file":
        values = write(tmp_path, "values.yaml", "# values\nreplicas: {n: 1}\n")
        args += ["--var-file", values]
        where = f"{values}:2: replicas"
        got = "a mapping"
    else:
        monkeypatch.setenv("SUBSTRATUS_VAR_replicas", "1.5")
        where = "SUBSTRATUS_VAR_replicas"
        got = "the number 1.5"
    assert errors(cli("validate", workdir, *args)) == [
        f'{where}: variable "replicas": expected an integer, got {got}']


def test_a_value_that_fails_its_declaration(cli: Run, tmp_path: Path) -> None:
    workdir = variables_workspace(tmp_path)
    assert errors(cli("validate", workdir, "--var", "project=abc", "--var", "replicas=0",
                      "--var", "zones=a")) == [
        '--var replicas: variable "replicas": 0 is less than the minimum 1',
        '--var zones: variable "zones": expected a list, got the string "a"']


def test_badly_formed_variable_arguments(cli: Run, tmp_path: Path) -> None:
    workdir = variables_workspace(tmp_path)
    result = cli("validate", workdir, "--var", "noequals")
    assert result.code == 3 and "Traceback" not in result.output
    assert result.err.startswith("Error: invalid --var 'noequals': expected NAME=VALUE")
    listing = write(tmp_path, "list.yaml", "- a\n")
    missing = tmp_path / "missing.yaml"
    found = errors(cli("validate", workdir, "--var-file", listing, "--var-file", missing,
                       "--var", "project=abc", "--var", "replicas=1"))
    assert found == [f"{listing}:1: a variables file holds one mapping of NAME: VALUE",
                     f"{missing}: cannot read the variables file: No such file or directory"]


def test_undeclared_references_and_bad_declarations(cli: Run, tmp_path: Path) -> None:
    write(tmp_path, "variables.yaml", """\
        apiVersion: substratus.ai/v1
        kind: Variable
        metadata: {name: project}
        spec: {type: string, default: p}
        ---
        apiVersion: substratus.ai/v1
        kind: Variable
        metadata: {name: secret}
        spec: {type: string, sensitive: true}
        ---
        apiVersion: substratus.ai/v1
        kind: Variable
        metadata: {name: count}
        spec: {type: integer, default: "3"}
        ---
        apiVersion: substratus.ai/v1
        kind: Variable
        metadata: {name: 9lives}
        spec: {}
        """)
    write(tmp_path, "uses.yaml", USES.replace("var.project }}/", "var.projet }}/"))
    found = errors(cli("validate", tmp_path))
    assert "variables.yaml:9: spec.sensitive: sensitive variables are not built yet: their " \
           "values would be written into plans and state" in found
    assert 'variables.yaml:14: spec: default "3": expected an integer, got the string "3"' \
        in found
    assert "variables.yaml:18: metadata.name: invalid variable name '9lives': use letters, " \
           "digits and _, not starting with a digit" in found


def test_an_undeclared_variable_in_a_file_suggests_the_closest(cli: Run,
                                                               tmp_path: Path) -> None:
    workdir = variables_workspace(tmp_path)
    write(workdir, "uses.yaml", USES.replace("var.project }}/", "var.projet }}/"))
    assert errors(cli("validate", workdir, "--var", "project=abc", "--var", "replicas=1")) == [
        'uses.yaml:6: spec.source.huggingface.name: undeclared variable "projet" (did you mean '
        '"project"?)']


def test_precedence_environment_then_files_then_var(cli: Run, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Lowest first: SUBSTRATUS_VAR_, --var-file (in order), --var (the last one wins)."""
    workdir = tmp_path / "ws"
    stack_folder(workdir)
    write(workdir, "variables.yaml", VARIABLES)
    write(workdir, "main.yaml", instance("ft", 'model_name: "${{ var.project }}"\n'
                                               'epochs: "${{ var.replicas }}"\n'))
    first = write(tmp_path, "first.yaml", "project: first\nreplicas: 2\n")
    second = write(tmp_path, "second.yaml", "project: second\n")

    def rendered(*args: str | Path) -> tuple[str, str]:
        result = cli("render", workdir, *args)
        assert result.code == 0, result.output
        name = result.out.split("name: ")[2].split("}")[0]
        layers = result.out.split("n_layer: ")[1].split("\n")[0]
        return name, layers

    monkeypatch.setenv("SUBSTRATUS_VAR_project", "environment")
    monkeypatch.setenv("SUBSTRATUS_VAR_replicas", "7")
    assert rendered() == ("environment", "7")
    assert rendered("--var-file", first) == ("first", "2")
    assert rendered("--var-file", first, "--var-file", second) == ("second", "2")
    assert rendered("--var-file", second, "--var-file", first) == ("first", "2")
    assert rendered("--var-file", first, "--var", "project=flag") == ("flag", "2")
    assert rendered("--var", "project=one", "--var", "project=two", "--var-file", first,
                    "--var", "replicas=9") == ("two", "9")
    # A value from a lower layer that fails is not checked once a higher one replaces it.
    monkeypatch.setenv("SUBSTRATUS_VAR_replicas", "not-a-number")
    assert rendered("--var", "replicas=3") == ("environment", "3")


def test_a_variable_given_to_a_stack_is_checked_again_by_the_stack(cli: Run,
                                                                   tmp_path: Path) -> None:
    stack_folder(tmp_path)
    write(tmp_path, "variables.yaml", VARIABLES)
    write(tmp_path, "main.yaml", instance("ft", 'model_name: "${{ var.project }}"\n'
                                                'epochs: "${{ var.replicas }}"\n'))
    assert errors(cli("validate", tmp_path, "--var", "project=abc", "--var", "replicas=50")) == [
        "main.yaml:9: spec.values.epochs: 50 is more than the maximum 10"]


def test_a_date_in_a_map_variable_reaches_a_stack_as_text(cli: Run, tmp_path: Path) -> None:
    """YAML reads 2024-01-01 in --var as a date, which JSON (the sandbox's input) has not: it
    used to end in an internal error."""
    write(tmp_path, "main.yaml", "apiVersion: substratus.ai/v1\nkind: Variable\n"
          "metadata: {name: m}\nspec: {type: map}\n---\n" + instance("ft", 'm: "${{ var.m }}"\n'))
    write(tmp_path, "stacks/s/stack.yaml", "parameters:\n  m: {type: map}\n")
    write(tmp_path, "stacks/s/t.yaml.j2", TEMPLATE.replace(
        "{size: {{ values.size }}, name: {{ values.model_name }}}", '{day: "{{ values.m.d }}"}'
    ).replace("{{ values.epochs }}", "1"))
    result = cli("render", tmp_path, "--var", "m={d: 2024-01-01}")
    assert result.code == 0, result.output
    assert '  labels: {day: "2024-01-01"}\n' in result.out


def test_a_value_refused_is_not_also_reported_missing(cli: Run, tmp_path: Path) -> None:
    workdir = variables_workspace(tmp_path)
    found = errors(cli("validate", workdir, "--var", "project=abc", "--var", "replicas=[1"))
    assert found == ['--var replicas: variable "replicas": expected an integer, got \'[1\'']
    # --var reads values as files are read: no YAML tags.
    found = errors(cli("validate", workdir, "--var", "project=abc", "--var", "zones=!!set {a}",
                       "--var", "replicas=1"))
    assert found == ['--var zones: variable "zones": expected a list, got \'!!set {a}\'']


def test_jinja_namespace_stays_usable_beside_the_instance_namespace(cli: Run,
                                                                    tmp_path: Path) -> None:
    stack_folder(tmp_path, template=TEMPLATE.replace(
        "      config:\n", "{% set ns = namespace(layers=0) %}\n"
        "{% for i in range(values.epochs) %}{% set ns.layers = ns.layers + 1 %}{% endfor %}\n"
        "      config:\n        n_head: {{ ns.layers }}\n"
        "        n_embd: {{ 1 if instance_namespace is none else 2 }}\n"))
    write(tmp_path, "main.yaml", instance("a", "model_name: m\n"))
    rendered = cli("render", tmp_path)
    assert rendered.code == 0, rendered.output
    assert "n_head: 3\n" in rendered.out and "n_embd: 1\n" in rendered.out
