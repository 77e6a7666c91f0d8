"""Escape sequences in file names, values and server answers reach the terminal as visible
escapes (`\\x1b[2J`), never as control codes that clear the screen or recolour what follows."""

from __future__ import annotations

from pathlib import Path

from substratus_cli.errors import ExitCode
from substratus_cli.render.terminal import safe

ESC = "\x1b"


def test_a_file_name_and_a_value_with_escape_sequences_print_as_text(cli, tmp_path: Path):
    (tmp_path / f"f{ESC}[32m.yaml").write_text(
        "apiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {name: red}\n"
        'spec: {source: {path: "x\\e[2Jy\\u202eevil"}}\n')
    result = cli("plan", tmp_path)
    assert result.code == ExitCode.INVALID_INPUT, result  # the path does not exist
    assert ESC not in result.err and "\u202e" not in result.err
    assert "Error: f\\x1b[32m.yaml:4: spec.source.path: source path 'x\\x1b[2Jy\\u202eevil'" \
        in result.err


def test_a_diagnostic_names_the_file_with_its_escapes_visible(cli, tmp_path: Path):
    (tmp_path / f"f{ESC}[32m.yaml").write_text(
        "apiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {name: Bad_Name}\n"
        "spec: {source: {path: x}}\n")
    result = cli("validate", tmp_path)
    assert result.code == ExitCode.INVALID_INPUT, result
    assert ESC not in result.err
    assert "Error: f\\x1b[32m.yaml:3: metadata.name" in result.err


def test_safe_keeps_newlines_tabs_and_printable_unicode():
    assert safe("a\tb\nc é 日本 ✓") == "a\tb\nc é 日本 ✓"
    assert safe("\x00\x07\x7f\x9b\u200f") == "\\x00\\x07\\x7f\\x9b\\u200f"
