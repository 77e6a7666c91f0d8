"""`${{ var.NAME }}` and `${{ stack.INSTANCE.OUTPUT }}` in workspace files: found, and replaced by
their values. A reference that is a whole value keeps the value's type (a number stays a number);
inside a longer string it is written as text. Secret references are left for apply."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

REFERENCE = re.compile(r"\$\{\{\s*(var|stack)\s*\.\s*([^{}]*?)\s*\}\}")


@dataclasses.dataclass(frozen=True)
class Reference:
    path: str  # the dotted field path it is in
    namespace: str  # "var" or "stack"
    name: str  # "project" or "platform.cluster"


class Unresolved(Exception):
    """A reference that has no value; its message says why."""


def find(data: Any, path: str = "") -> list[Reference]:
    """Every reference in `data`, with the field it is in."""
    if isinstance(data, str):
        return [Reference(path, m.group(1), m.group(2)) for m in REFERENCE.finditer(data)]
    found: list[Reference] = []
    for key, value in _items(data):
        found += find(value, f"{path}.{key}" if path else str(key))
    return found


def substitute(data: Any, resolve: Callable[[str, str], Any],
               report: Callable[[str, str], None], path: str = "") -> Any:
    """A copy of `data` with each reference replaced by `resolve(namespace, name)`; one that
    raises Unresolved is reported with `report(path, message)` and left as written."""
    if isinstance(data, str):
        whole = REFERENCE.fullmatch(data.strip())
        if whole:
            try:
                return resolve(whole.group(1), whole.group(2))
            except Unresolved as error:
                report(path, str(error))
                return data

        def text(match: re.Match[str]) -> str:
            try:
                return _as_text(resolve(match.group(1), match.group(2)))
            except Unresolved as error:
                report(path, str(error))
                return match.group(0)
        return REFERENCE.sub(text, data)
    if isinstance(data, dict):
        return {k: substitute(v, resolve, report, f"{path}.{k}" if path else str(k))
                for k, v in data.items()}
    if isinstance(data, list):
        return [substitute(v, resolve, report, f"{path}.{i}" if path else str(i))
                for i, v in enumerate(data)]
    return data


def _items(data: Any) -> list[tuple[Any, Any]]:
    if isinstance(data, dict):
        return list(data.items())
    if isinstance(data, list):
        return list(enumerate(data))
    return []


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True)
