"""Secret references in a spec, for the local runtime: checked at plan (a missing secret fails
the plan, not the apply; values are discarded), substituted only when a workload starts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from substratus_cli.secrets import references, substitute

Resolver = Callable[[str, str], str] | None


def check(spec: Mapping[str, Any], resolve_secret: Resolver) -> None:
    if resolve_secret is None:
        return
    for name, key in references(spec):
        resolve_secret(name, key)


def resolved(text: str, resolve_secret: Resolver) -> str:
    return text if resolve_secret is None else substitute(text, resolve_secret)


def env_of(spec: Mapping[str, Any], resolve_secret: Resolver) -> dict[str, str]:
    """spec.env with its secret references replaced by their values."""
    return {k: resolved(v, resolve_secret) for k, v in (spec.get("env") or {}).items()}
