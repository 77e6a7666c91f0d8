"""Stacks on the local runtime, through the CLI: the shipped finetune-and-serve applied end to end
(trains and serves the quickstart-sized model), re-planned empty, a changed value planned as the
one resource it affects, destroyed clean; two instances of one stack side by side; variables and
outputs."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus_cli.errors import ExitCode
from tests.conftest import EXAMPLES, tear_down

EXAMPLE = EXAMPLES / "finetune-and-serve"


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Path]:
    dest = tmp_path / "finetune-and-serve"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".substratus"))
    yield dest
    tear_down(dest)


def changes(cli, workdir: Path, *args: str) -> dict[str, list[str]]:
    plan = cli("plan", "--json", workdir, *args)
    assert plan.code == 0, plan.output
    return {c["address"]: c["change"]["actions"] for c in json.loads(plan.out)["resource_changes"]
            if c["change"]["actions"] != ["no-op"]}


@pytest.mark.slow
def test_finetune_and_serve_applies_serves_replans_and_destroys(cli, example):
    applied = cli("apply", "--auto-approve", example, "--var", "epochs=50")
    assert applied.code == 0, applied.output
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in applied.out

    outputs = json.loads(cli("output", "--json", example).out)
    assert outputs["colors.model"]["value"] == "colors-tuned"
    assert outputs["colors.digest"]["value"].startswith("sha256:")
    assert outputs["colors.digest"]["value"] == outputs["Model/colors-tuned.digest"]["value"]
    endpoint = cli("output", "colors.endpoint", example)
    assert endpoint.code == 0, endpoint.output
    url = endpoint.out.strip()
    assert url == outputs["ModelServer/colors.endpoint"]["value"]
    request = urllib.request.Request(f"{url}/v1/completions", json.dumps(
        {"prompt": "My favorite color is", "max_tokens": 4}).encode(),
        {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read())["choices"][0]["text"] is not None

    # Unchanged values: nothing to do. The variable given again, as Terraform wants it.
    assert cli("plan", "--detailed-exitcode", example, "--var", "epochs=50").code == ExitCode.OK
    # Without it the default (200 epochs) re-trains, and everything downstream follows.
    assert changes(cli, example) == {"Model/default/colors-tuned": ["delete", "create"],
                                     "ModelServer/default/colors": ["update"]}

    # A server value: the server alone, in place, with its reason.
    plan = cli("plan", "--detailed-exitcode", example, "--var", "epochs=50",
               "--var", "max_tokens=16")
    assert plan.code == ExitCode.CHANGES_PRESENT, plan.output
    assert "spec.params.max_tokens: 48 -> 16" in plan.out
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.out

    shown = json.loads(cli("state", "show", "ModelServer/colors", example, "--json",
                           "--var", "epochs=50").out)
    assert shown["status"]["endpoint"] == url
    assert shown["applied_as_declared"] is True
    assert shown["declared_in"] == "stacks/finetune-and-serve/server.yaml.j2:4"

    destroyed = cli("destroy", "--auto-approve", example, "--var", "epochs=50")
    assert destroyed.code == 0, destroyed.output
    assert "Destroy complete! Resources: 4 destroyed." in destroyed.out
    assert cli("state", "list", example).out == ""
    after = json.loads(cli("output", "--json", example).out)
    assert after["colors.digest"]["value"] is None
    assert not [k for k in after if k.startswith(("Model/", "Dataset/", "ModelServer/"))]


PAIR = """\
parameters:
  file: {type: string, description: The data file.}
outputs:
  dataset: {resource: "Dataset/{{ instance }}-data"}
  digest: {resource: "Dataset/{{ instance }}-data", field: digest}
"""
PAIR_TEMPLATE = """\
apiVersion: substratus.ai/v1
kind: Dataset
metadata:
  name: {{ instance }}-data
spec:
  source:
    path: {{ values.file }}
---
apiVersion: substratus.ai/v1
kind: Dataset
metadata:
  name: {{ instance }}-copy
spec:
  source:
    path: {{ values.file }}
"""


def instance(name: str, file: str) -> str:
    return (f"apiVersion: substratus.ai/v1\nkind: Stack\nmetadata:\n  name: {name}\nspec:\n"
            f"  source: ./stacks/pair\n  values:\n    file: {file}\n")


@pytest.fixture
def two_instances(tmp_path: Path) -> Iterator[Path]:
    workdir = tmp_path / "ws"
    (workdir / "stacks" / "pair").mkdir(parents=True)
    (workdir / "stacks" / "pair" / "stack.yaml").write_text(PAIR)
    (workdir / "stacks" / "pair" / "data.yaml.j2").write_text(PAIR_TEMPLATE)
    (workdir / "a.txt").write_text("alpha\n")
    (workdir / "b.txt").write_text("beta\n")
    (workdir / "a.yaml").write_text(instance("a", "a.txt"))
    (workdir / "b.yaml").write_text(instance("b", "b.txt"))
    yield workdir
    tear_down(workdir)


def test_two_instances_coexist_and_destroying_one_leaves_the_other(cli, two_instances):
    applied = cli("apply", "--auto-approve", two_instances)
    assert applied.code == 0, applied.output
    assert "Resources: 4 added" in applied.out
    listed = cli("state", "list", two_instances).out
    assert [line.split("\t")[0] for line in listed.splitlines()] == [
        "Dataset/default/a-copy", "Dataset/default/a-data", "Dataset/default/b-copy",
        "Dataset/default/b-data"]
    digests = json.loads(cli("output", "--json", two_instances).out)
    assert digests["a.digest"]["value"] != digests["b.digest"]["value"]

    # An instance as a target: its resources, as Terraform's -target=module.b.
    assert changes(cli, two_instances, "--destroy", "--target", "Stack/b") == {
        "Dataset/default/b-copy": ["delete"], "Dataset/default/b-data": ["delete"]}
    unknown = cli("plan", two_instances, "--target", "Stack/c")
    assert unknown.code == ExitCode.INVALID_INPUT
    assert "no Stack named 'c' (stacks: a, b)" in unknown.err

    # A value of one instance: only what it renders differently is planned.
    (two_instances / "c.txt").write_text("gamma\n")
    (two_instances / "b.yaml").write_text(instance("b", "c.txt"))
    assert changes(cli, two_instances) == {"Dataset/default/b-copy": ["delete", "create"],
                                           "Dataset/default/b-data": ["delete", "create"]}

    # Removing an instance destroys its resources, and only them.
    (two_instances / "b.yaml").unlink()
    assert changes(cli, two_instances) == {"Dataset/default/b-copy": ["delete"],
                                           "Dataset/default/b-data": ["delete"]}
    assert cli("apply", "--auto-approve", two_instances).code == 0
    listed = cli("state", "list", two_instances).out
    assert [line.split("\t")[0] for line in listed.splitlines()] == [
        "Dataset/default/a-copy", "Dataset/default/a-data"]
    assert cli("plan", "--detailed-exitcode", two_instances).code == ExitCode.OK


def test_an_output_used_in_a_workspace_file_orders_the_graph(cli, two_instances):
    (two_instances / "b.yaml").unlink()
    (two_instances / "notebook.yaml").write_text(
        "apiVersion: substratus.ai/v1\nkind: Notebook\nmetadata: {name: look}\n"
        "spec:\n  dataset: {name: '${{ stack.a.dataset }}'}\n  suspend: true\n")
    graph = cli("graph", two_instances)
    assert graph.code == 0, graph.output
    assert '"Notebook/default/look" -> "Dataset/default/a-data";' in graph.out

    (two_instances / "notebook.yaml").write_text(
        "apiVersion: substratus.ai/v1\nkind: Notebook\nmetadata: {name: look}\n"
        "spec:\n  env: {DIGEST: '${{ stack.a.digest }}'}\n  suspend: true\n")
    refused = cli("validate", two_instances)
    assert refused.code == ExitCode.INVALID_INPUT
    assert ('notebook.yaml:5: spec.env.DIGEST: output "a.digest" is known only after apply '
            "(Dataset/a-data digest); `substratus output` shows it") in refused.err


def test_init_writes_a_workspace_that_validates_once_required_values_are_given(cli, tmp_path):
    written = cli("init", "finetune-and-serve", tmp_path / "new")
    assert written.code == 0, written.output
    text = (tmp_path / "new" / "finetune-and-serve.yaml").read_text()
    assert "    dataset: null  # REQUIRED" in text
    assert '    training_params: {"epochs": 200, "learning_rate": 0.003}' in text
    assert "# Whether to serve the fine-tuned model. (boolean)" in text

    refused = cli("validate", tmp_path / "new")
    assert refused.code == ExitCode.INVALID_INPUT
    assert "finetune-and-serve.yaml:" in refused.err
    assert "spec.values.dataset: required parameter has no value" in refused.err

    (tmp_path / "new" / "finetune-and-serve.yaml").write_text(
        text.replace("dataset: null  # REQUIRED", "dataset: {path: data.jsonl}"))
    (tmp_path / "new" / "data.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    assert cli("validate", tmp_path / "new").code == 0
    again = cli("init", "finetune-and-serve", tmp_path / "new")
    assert again.code == ExitCode.INVALID_INPUT
    assert "exists already; nothing was written" in again.err


def test_a_stack_folder_is_not_a_workspace(cli, tmp_path):
    refused = cli("validate", EXAMPLES.parent / "stacks" / "finetune-and-serve")
    assert refused.code == ExitCode.INVALID_INPUT
    assert "finetune-and-serve is a stack (it has a stack.yaml), not a workspace" in refused.err
    # Inside a workspace, its folder is skipped: only Stack documents render it.
    workdir = tmp_path / "ws"
    shutil.copytree(EXAMPLE, workdir)
    shutil.copytree(EXAMPLES.parent / "stacks" / "finetune-and-serve",
                    workdir / "stacks" / "mine")
    (workdir / "colors.yaml").write_text((workdir / "colors.yaml").read_text().replace(
        "source: finetune-and-serve", "source: ./stacks/mine"))
    rendered = cli("render", workdir)
    assert rendered.code == 0, rendered.output
    assert "# Source: stacks/mine/models.yaml.j2 (stack colors)" in rendered.out
    assert rendered.out.count("kind: Model\n") == 2


def test_variables_come_from_the_workspace_files_then_var_files_then_var(cli, tmp_path,
                                                                         monkeypatch):
    workdir = tmp_path / "ws"
    shutil.copytree(EXAMPLE, workdir)

    def epochs(*args: str) -> str:
        rendered = cli("render", workdir, *args)
        assert rendered.code == 0, rendered.output
        line = next(x for x in rendered.out.splitlines() if "epochs" in x)
        return line.strip()

    assert epochs() == 'params: {"epochs": 200, "learning_rate": 0.003}'
    monkeypatch.setenv("SUBSTRATUS_VAR_epochs", "3")
    assert '"epochs": 3' in epochs()
    (workdir / "team.vars.yaml").write_text("epochs: 5\n")
    assert '"epochs": 5' in epochs()
    (tmp_path / "mine.yaml").write_text("epochs: 6\n")
    assert '"epochs": 6' in epochs("--var-file", str(tmp_path / "mine.yaml"))
    assert '"epochs": 8' in epochs("--var-file", str(tmp_path / "mine.yaml"), "--var", "epochs=8")

    (workdir / "team.vars.yaml").write_text("epochs: 5\nmax_tokens: 600\nepoch: 1\n")
    refused = cli("validate", workdir)
    assert refused.code == ExitCode.INVALID_INPUT
    assert ('team.vars.yaml:2: max_tokens: variable "max_tokens": 600 is more than the maximum '
            "512") in refused.err
    assert 'team.vars.yaml:3: epoch: value for undeclared variable "epoch" (did you mean ' \
           '"epochs"?)' in refused.err


def test_a_template_can_fail_with_its_own_message(cli, two_instances):
    template = two_instances / "stacks" / "pair" / "data.yaml.j2"
    template.write_text(template.read_text().replace(
        "    path: {{ values.file }}\n---",
        "    path: {{ values.file }}\n"
        "{% if values.file == 'b.txt' %}{{ fail('b.txt is not allowed here') }}{% endif %}\n---"))
    refused = cli("validate", two_instances)
    assert refused.code == ExitCode.INVALID_INPUT
    assert "Error: stacks/pair/data.yaml.j2:8: b.txt is not allowed here" in refused.err
    assert 'in stack "b" (b.yaml:1)' in refused.err
    assert "Error: a.yaml" not in refused.err
