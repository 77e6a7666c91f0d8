"""Which files a workspace is: the top of the directory by default (like Terraform and
`kubectl -f DIR`); subfolders with --recursive, and then only files declaring substratus
resources (a data/ folder's YAML is never parsed). Through the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from substratus_cli.cli import cli as click_group
from substratus_cli.errors import ExitCode


@pytest.fixture
def nested(quickstart_datasets: Path) -> Path:
    """The quickstart's datasets with color-facts moved to a subfolder, and data/ holding YAML
    of its own that is no resource file (some of it not even valid YAML)."""
    ws = quickstart_datasets
    datasets = ws / "datasets.yaml"
    top, facts = datasets.read_text().split("---\n")
    datasets.write_text(top)
    (ws / "more").mkdir()
    (ws / "more" / "facts.yaml").write_text(facts)  # its path stays relative to the workspace
    (ws / "data" / "labels.yaml").write_text("colors: [red, green]\n")
    (ws / "data" / "broken.yml").write_text("kind: [\n")
    return ws


def test_only_the_top_of_the_directory_is_read_unless_recursive(cli, nested: Path):
    top_only = cli("validate", nested)
    assert top_only.code == 0, top_only.output
    assert "(2 resources)" in top_only.out  # the Environment and favorite-colors
    recursive = cli("validate", nested, "--recursive")
    assert recursive.code == 0, recursive.output
    assert "(3 resources)" in recursive.out

    assert "Plan: 1 to add" in cli("plan", nested).out
    assert cli("apply", nested, "--recursive", "--auto-approve").code == 0
    assert cli("plan", nested, "--recursive", "--detailed-exitcode").code == 0
    # Without --recursive the subfolder's resources are not in the files: Terraform's semantics.
    plan = cli("plan", nested, "--detailed-exitcode")
    assert plan.code == ExitCode.CHANGES_PRESENT
    assert "Plan: 0 to add, 0 to change, 1 to destroy." in plan.out
    assert "Dataset/default/color-facts will be destroyed" in plan.out

    shown = json.loads(cli("state", "show", "Dataset/color-facts", nested, "--recursive",
                           "--json").out)
    assert shown["declared_in"] == "more/facts.yaml:1"
    graph = cli("graph", nested, "--recursive").out
    assert '"Dataset/default/color-facts";' in graph
    assert '"Dataset/default/color-facts";' not in cli("graph", nested).out
    assert cli("state", "list", nested, "--recursive").out.count("Dataset/") == 2
    assert "Dataset/color-facts.digest = " in cli("output", nested, "--recursive").out
    assert cli("verify", nested, "--recursive").code == 0
    assert cli("destroy", nested, "--recursive", "--auto-approve").code == 0
    assert cli("state", "list", nested).out == ""


def test_a_workspace_with_only_subfolders_says_how_to_read_them(cli, tmp_path: Path):
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "b.yaml").write_text(
        "apiVersion: substratus.ai/v1\nkind: Bucket\nmetadata: {name: b}\nspec: {}\n")
    result = cli("validate", tmp_path)
    assert result.code == ExitCode.INVALID_INPUT
    assert f"Error: {tmp_path}: no resource files (*.yaml, *.yml) in {tmp_path}" in result.err
    assert "(infra left out): --recursive reads its subfolders too" in result.err


def test_recursive_cannot_change_a_saved_plan(cli, nested: Path):
    saved = nested.parent / "p.plan"
    assert cli("plan", nested, "--out", saved).code == 0
    result = cli("apply", saved, "--recursive")
    assert result.code == ExitCode.INVALID_INPUT
    assert "--recursive cannot be used with a saved plan" in result.err


def _commands(group, prefix=()):
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_command_that_reads_a_workspace_takes_recursive(cli):
    reads_a_workspace = []
    for path, command in _commands(click_group):
        arguments = [p.name for p in command.params if p.param_type_name == "argument"]
        if {"directory", "path", "args"} & set(arguments) and path != ("init",):  # init writes one
            reads_a_workspace.append(" ".join(path))
            help_text = cli(*path, "--help").out
            assert re.search(r"--recursive\s", help_text), path
            assert "--var " in help_text and "--var-file" in help_text, path
    assert {"validate", "plan", "apply", "destroy", "graph", "render", "output", "verify", "logs",
            "state list", "state show", "notebook open", "force-unlock"} <= set(reads_a_workspace)
