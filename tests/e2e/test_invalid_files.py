"""Malformed resource files through the real CLI: one clear error each, file:line and field, exit 3."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from substratus_cli.errors import ExitCode
from tests.support.goldens import check_golden

CASES = {
    "bad yaml": (
        "apiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {name: a\nspec: {}\n",
        "Error: a.yaml:4: invalid YAML: while parsing a flow mapping; expected ',' or '}', "
        "but got ':'"),
    "unknown kind": (
        "apiVersion: substratus.ai/v1\nkind: Datasett\nmetadata: {name: a}\nspec: {}\n",
        'Error: a.yaml:2: kind: unknown kind "Datasett" (did you mean "Dataset"?)'),
    "wrong field type": (
        "apiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {name: a}\nspec:\n"
        "  source: {path: x}\n  params: [1, 2]\n",
        "Error: a.yaml:6: spec.params: expected a mapping, got a list"),
    "secret in a url": (
        "apiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {name: a}\nspec:\n"
        "  source: {url: 'https://example.com/x.csv?token=${{ secrets.hub.token }}'}\n",
        "Error: a.yaml:5: spec.source.url: a URL cannot hold a secret reference (it is shown in "
        "plans and kept in state); send the secret in `headers` (e.g. Authorization)"),
    "missing reference": (
        "apiVersion: substratus.ai/v1\nkind: Model\nmetadata: {name: m}\nspec:\n  training:\n"
        "    baseModel: {name: m}\n    dataset: {name: colorz}\n",
        'Error: a.yaml:7: spec.training.dataset.name: Dataset "colorz" not found '
        "(no Dataset is defined)"),
    "cycle": (
        "apiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {name: d}\n"
        "spec: {source: {path: x}}\n---\n"
        "apiVersion: substratus.ai/v1\nkind: Model\nmetadata: {name: a}\nspec:\n  training:\n"
        "    baseModel: {name: b}\n    dataset: {name: d}\n---\n"
        "apiVersion: substratus.ai/v1\nkind: Model\nmetadata: {name: b}\nspec:\n  training:\n"
        "    baseModel: {name: a}\n    dataset: {name: d}\n",
        "Error: a.yaml:11: spec.training.baseModel.name: dependency cycle: "
        "Model/default/a -> Model/default/b -> Model/default/a"),
}


@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_file_is_one_clear_error_exit_3(cli, tmp_path: Path, case: str, command: str):
    text, expected = CASES[case]
    (tmp_path / "x").mkdir()  # what the path sources name
    (tmp_path / "a.yaml").write_text(text)
    args = [command, tmp_path] + (["--auto-approve"] if command == "apply" else [])
    result = cli(*args)
    assert result.code == ExitCode.INVALID_INPUT
    errors = [line for line in result.err.splitlines() if line.startswith("Error: ")]
    assert errors == [expected], result.err
    assert "Traceback" not in result.output
    assert not (tmp_path / ".substratus").exists(), "nothing is written for invalid files"


def test_all_errors_of_a_run_are_reported_together(cli, tmp_path: Path):
    (tmp_path / "x").mkdir()
    for name in ("unknown kind", "wrong field type"):
        (tmp_path / f"{name.replace(' ', '-')}.yaml").write_text(CASES[name][0])
    result = cli("validate", tmp_path)
    assert result.code == ExitCode.INVALID_INPUT
    assert result.err.count("Error: ") == 2
    assert "2 errors in the resource files." in result.err


def test_container_images_are_refused_on_the_local_runtime_with_file_and_line(cli, tmp_path: Path):
    (tmp_path / "m.yaml").write_text(
        "apiVersion: substratus.ai/v1\nkind: Model\nmetadata: {name: m}\nspec:\n"
        "  image: substratusai/model-loader-huggingface\n  source: {path: weights}\n")
    (tmp_path / "weights").mkdir()
    result = cli("plan", tmp_path)
    assert result.code == ExitCode.INVALID_INPUT
    assert ("Error: m.yaml:5: spec.image: Model 'm': the local runtime runs workloads as "
            "processes, not container images (spec.image)" in result.err)


def test_a_missing_model_path_is_refused_with_file_and_line(cli, tmp_path: Path):
    (tmp_path / "m.yaml").write_text(
        "apiVersion: substratus.ai/v1\nkind: Model\nmetadata: {name: m}\n"
        "spec: {source: {path: weights}}\n")
    result = cli("plan", tmp_path)
    assert result.code == ExitCode.INVALID_INPUT
    assert result.err.startswith("Error: m.yaml:4: spec.source.path: source path 'weights' does "
                                 f"not exist ({tmp_path / 'weights'})\n"), result.err


def test_validate_accepts_the_quickstart(cli, quickstart):
    result = cli("validate", quickstart)
    assert result.code == 0
    assert "Success! The resource files are valid (7 resources)." in result.out


def _line_of(diagnostic: dict) -> str:
    """A diagnostic of the JSON document written as the terminal's `Error:` line."""
    where = diagnostic.get("range")
    place = f"{where['filename']}:{where['start']['line']}" if where else ""
    return "Error: " + ": ".join(
        t for t in (place, diagnostic.get("field"), diagnostic["summary"]) if t)


@pytest.mark.parametrize("command", ["validate", "plan"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_json_on_invalid_files_is_a_diagnostics_document_exit_3(cli, tmp_path: Path, case: str,
                                                                command: str):
    text, expected = CASES[case]
    (tmp_path / "x").mkdir()  # what the path sources name
    (tmp_path / "a.yaml").write_text(text)
    result = cli(command, tmp_path, "--json")
    assert result.code == ExitCode.INVALID_INPUT
    document = json.loads(result.out)
    assert {k: v for k, v in document.items() if k != "diagnostics"} == {
        "format_version": "1.0", "valid": False, "error_count": 1, "warning_count": 0}
    assert [_line_of(d) for d in document["diagnostics"]] == [expected]
    assert document["diagnostics"][0]["severity"] == "error"
    assert result.err == "1 error in the resource files.\n", "the errors are in the document"
    assert not (tmp_path / ".substratus").exists()


def test_diagnostics_document_ranges_point_at_the_field(cli, tmp_path: Path, update_goldens):
    """Also the golden test_tfjson.py hands to terraform-json's reader of `terraform validate
    -json` (tests/unit/goldens/tfjson/diagnostics.json)."""
    (tmp_path / "a.yaml").write_text(CASES["unknown kind"][0])
    (tmp_path / "x").mkdir()  # what the path source names
    (tmp_path / "b.yaml").write_text(
        "apiVersion: substratus.ai/v1\nkind: Dataset\nmetadata:\n  name: b\nspec:\n"
        "  source:\n    path: x\n    'sha256': abc\n  command:\n  - 7\n")
    result = cli("plan", "--json", tmp_path)
    assert result.code == ExitCode.INVALID_INPUT
    assert json.loads(result.out) == {
        "format_version": "1.0", "valid": False, "error_count": 4, "warning_count": 0,
        "diagnostics": [
            {"severity": "error", "summary": 'unknown kind "Datasett" (did you mean "Dataset"?)',
             "detail": "", "field": "kind",
             "range": {"filename": "a.yaml", "start": {"line": 2, "column": 1},
                       "end": {"line": 2, "column": 5}}},
            {"severity": "error", "summary": "sha256 and headers apply only to a url source",
             "detail": "", "field": "spec.source",
             "range": {"filename": "b.yaml", "start": {"line": 6, "column": 3},
                       "end": {"line": 6, "column": 9}}},
            {"severity": "error", "detail": "", "field": "spec.source.sha256",
             "summary": "invalid sha256 'abc': expected 64 lowercase hexadecimal digits",
             "range": {"filename": "b.yaml", "start": {"line": 8, "column": 5},
                       "end": {"line": 8, "column": 13}}},
            # A list item has no key: the range is the item's text.
            {"severity": "error", "detail": "", "field": "spec.command.0",
             "summary": "Input should be a valid string, got 7",
             "range": {"filename": "b.yaml", "start": {"line": 10, "column": 3},
                       "end": {"line": 10, "column": 6}}},
        ]}
    check_golden("tfjson/diagnostics.json", result.out, update_goldens)


def test_diagnostics_document_of_an_unreadable_file_never_reads_it(cli, tmp_path: Path):
    """A FIFO named like a resource file is refused by the loader; the document's range does not
    read it either (reading a FIFO waits for a writer forever)."""
    (tmp_path / "a.yaml").write_text(CASES["unknown kind"][0])
    os.mkfifo(tmp_path / "pipe.yaml")
    result = cli("validate", "--json", tmp_path)
    assert result.code == ExitCode.INVALID_INPUT
    document = json.loads(result.out)
    assert [(d["range"]["filename"], d["range"]["start"], d["summary"])
            for d in document["diagnostics"]] == [
        ("a.yaml", {"line": 2, "column": 1}, CASES["unknown kind"][1].split(": ", 3)[3]),
        ("pipe.yaml", {"line": 1, "column": 1}, "not a regular file")]


def test_validate_json_of_valid_files(cli, quickstart):
    result = cli("validate", "--json", quickstart)
    assert result.code == 0
    assert json.loads(result.out) == {"format_version": "1.0", "valid": True, "error_count": 0,
                                      "warning_count": 0, "diagnostics": []}
