"""`substratus init STACK [DIR]`: a new workspace file that uses a stack, every parameter written
out with its default (or marked REQUIRED) and its description as a comment."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pydantic
import yaml

from substratus_cli.address import DNS_LABEL
from substratus_cli.errors import UsageError
from substratus_cli.resource import API_VERSION
from substratus_cli.stacks.instances import SHIPPED, locate
from substratus_cli.stacks.parameters import Definition
from substratus_cli.stacks.sandbox import DEFINITION


def write(stack: str, directory: Path, instance: str | None = None) -> Path:
    workdir = directory.resolve()
    root, problem = locate(stack, Path.cwd() if ("/" in stack or stack.startswith(".")) else workdir)
    if root is None:
        raise UsageError(problem)
    try:
        definition = Definition.model_validate(
            yaml.safe_load((root / DEFINITION).read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, pydantic.ValidationError) as error:
        raise UsageError(f"the stack's {DEFINITION} is invalid; `substratus validate` on a "
                         f"workspace that uses it says where ({type(error).__name__})") from None
    name = instance or root.name
    if not DNS_LABEL.fullmatch(name):
        raise UsageError(f"invalid instance name {name!r}: use lowercase letters, digits and '-'",
                         hint="pass --name NAME")
    target = directory / f"{name}.yaml"
    if target.exists():
        raise UsageError(f"{target} exists already; nothing was written",
                         hint="pass --name NAME for another instance, or another DIR")
    if root.is_relative_to(SHIPPED):
        source = root.name
    else:
        source = Path(os.path.relpath(root, workdir)).as_posix()
        source = source if source.startswith(".") else f"./{source}"
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(_document(name, source, definition), encoding="utf-8")
    return target


def _document(name: str, source: str, definition: Definition) -> str:
    lines = []
    if definition.description:
        lines += [f"# {line}".rstrip() for line in textwrap.wrap(definition.description, 96)]
    lines += [f"apiVersion: {API_VERSION}", "kind: Stack", "metadata:", f"  name: {name}",
              "spec:", f"  source: {source}", "  values:"]
    if not definition.parameters:
        lines[-1] = "  values: {}"
    for key, parameter in definition.parameters.items():
        about = parameter.description or ""
        kind = parameter.type + (f", one of {', '.join(map(json.dumps, parameter.enum))}"
                                 if parameter.enum else "")
        for line in textwrap.wrap(f"{about} ({kind})".strip(), 90):
            lines.append(f"    # {line}")
        if parameter.required:
            lines.append(f"    {key}: null  # REQUIRED")
        else:
            lines.append(f"    {key}: {json.dumps(parameter.default)}")
    return "\n".join(lines) + "\n"
