"""How one value prints in a human plan: JSON-ish, secrets hidden, unknowns spelled out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from substratus_cli.action import UNKNOWN
from substratus_cli.secrets import SENSITIVE, is_sensitive


def show(value: Any) -> str:
    if value is UNKNOWN:
        return "(known after apply)"
    if is_sensitive(value):
        return SENSITIVE
    if value is None:
        return "null"
    return json.dumps(value, sort_keys=True, default=str)


def leaves(value: Any, prefix: str) -> list[tuple[str, Any]]:
    """Flatten a nested mapping to (dotted path, leaf value) pairs, lists kept whole."""
    if isinstance(value, Mapping) and value:
        out: list[tuple[str, Any]] = []
        for k in value:
            out.extend(leaves(value[k], f"{prefix}.{k}"))
        return out
    return [(prefix, value)]
