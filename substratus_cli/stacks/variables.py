"""Workspace variables: declared by `Variable` documents, given with `--var NAME=VALUE`,
`--var-file FILE.yaml`, the workspace's `*.vars.yaml` files or `SUBSTRATUS_VAR_NAME` (lowest
first: environment, the workspace's files by name, --var-file in order, then --var, the last one
winning, as Terraform does), each checked against its declaration."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from substratus_cli.diagnostics import Diagnostics
from substratus_cli.errors import UsageError
from substratus_cli.stacks.parameters import Parameter, check, parse_text
from substratus_cli.yamlpos import parse_documents

ENV_PREFIX = "SUBSTRATUS_VAR_"


@dataclasses.dataclass(frozen=True)
class VariableInput:
    """What the command line and the environment give; read against the declarations later."""

    assignments: tuple[tuple[str, str], ...] = ()
    files: tuple[Path, ...] = ()
    environ: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The workspace's own *.vars.yaml files (Terraform's *.auto.tfvars): (path, name shown).
    workspace_files: tuple[tuple[Path, str], ...] = ()

    @classmethod
    def from_command_line(cls, assignments: tuple[str, ...], files: tuple[Path, ...],
                          environ: Mapping[str, str] | None = None) -> VariableInput:
        pairs = []
        for text in assignments:
            name, equals, value = text.partition("=")
            if not equals or not name.strip():
                raise UsageError(f"invalid --var {text!r}: expected NAME=VALUE")
            pairs.append((name.strip(), value))
        source = os.environ if environ is None else environ
        env = {k[len(ENV_PREFIX):]: v for k, v in source.items() if k.startswith(ENV_PREFIX)}
        return cls(tuple(pairs), files, env)


@dataclasses.dataclass(frozen=True)
class Declaration:
    name: str
    parameter: Parameter
    file: str
    line: int


def resolve(declared: Mapping[str, Declaration], given: VariableInput,
            diagnostics: Diagnostics) -> dict[str, Any]:
    """Each declared variable's value; every problem (an undeclared name given, a wrong type, a
    required variable not given) is reported, all of them together."""
    values: dict[str, Any] = {}
    where: dict[str, tuple[str | None, int | None, str]] = {}
    refused: set[str] = set()  # given, but not as its type: reported once, not as missing too

    def give(name: str, value: Any, file: str | None, line: int | None, field: str,
             text: bool) -> None:
        declaration = declared.get(name)
        if declaration is None:
            close = difflib.get_close_matches(name, list(declared), n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else \
                "; declare it with a Variable document"
            diagnostics.error(f'value for undeclared variable "{name}"{hint}', file=file,
                              line=line, field=field)
            return
        if text:
            value, problem = parse_text(declaration.parameter, value)
            if problem:
                diagnostics.error(f'variable "{name}": {problem}', file=file, line=line,
                                  field=field)
                refused.add(name)
                return
        values[name] = value
        where[name] = (file, line, field)

    for name, value in sorted(given.environ.items()):
        if name in declared:  # others may be meant for another workspace
            give(name, value, None, None, f"{ENV_PREFIX}{name}", text=True)
    named = [*given.workspace_files, *((path, str(path)) for path in given.files)]
    for path, shown in named:
        for name, value, line in _read_var_file(path, shown, diagnostics):
            give(name, value, shown, line, name, text=False)
    for name, value in given.assignments:
        give(name, value, None, None, f"--var {name}", text=True)

    resolved: dict[str, Any] = {}
    for name, declaration in declared.items():
        if name in values and values[name] is None and not declaration.parameter.required:
            resolved[name] = declaration.parameter.default
        elif name in values:
            problem = check(declaration.parameter, values[name])
            if problem:
                given_in, given_at, field = where[name]
                diagnostics.error(f'variable "{name}": {problem}', file=given_in, line=given_at,
                                  field=field)
                continue
            resolved[name] = values[name]
        elif name in refused:
            continue
        elif declaration.parameter.required:
            diagnostics.error(
                f'variable "{name}" is required and has no value',
                detail=f"give it with --var {name}=VALUE, in a --var-file, or as "
                       f"{ENV_PREFIX}{name}",
                file=declaration.file, line=declaration.line, field="metadata.name")
        else:
            resolved[name] = declaration.parameter.default
    return resolved


def _read_var_file(path: Path, shown: str,
                   diagnostics: Diagnostics) -> list[tuple[str, Any, int]]:
    """(name, value, line) for each entry of a variables file (a YAML mapping)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        diagnostics.error(f"cannot read the variables file: {reason}", file=shown)
        return []
    documents = parse_documents(text, shown, diagnostics)
    if not documents:
        return []
    document = documents[0]
    if len(documents) > 1 or not isinstance(document.data, dict):
        diagnostics.error("a variables file holds one mapping of NAME: VALUE", file=shown,
                          line=document.line)
        return []
    return [(str(k), v, document.field_lines.get(str(k), document.line))
            for k, v in document.data.items()]
