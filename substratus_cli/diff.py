"""Field-level differences between a live spec and a desired one (deepdiff), and spec hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from substratus_cli.action import FieldChange
from substratus_cli.secrets import is_sensitive


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def spec_hash(spec: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
    payload = {"spec": spec, "labels": dict(labels or {})}
    return "sha256:" + hashlib.sha256(canonical_json(payload)).hexdigest()


def field_changes(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    *,
    prefix: str = "spec",
    forces_replacement: Callable[[str], bool] = lambda path: False,
) -> tuple[FieldChange, ...]:
    """Every leaf that differs, as dotted paths under `prefix`, sorted by path."""
    if canonical_json(dict(before or {})) == canonical_json(dict(after or {})):
        return ()  # the common case of a plan with no changes, without deepdiff
    # Imported here: deepdiff (and numpy under it) costs a plan with no changes a quarter second.
    from deepdiff import DeepDiff  # noqa: PLC0415
    from deepdiff.helper import NotPresent  # noqa: PLC0415

    diff = DeepDiff(dict(before or {}), dict(after or {}), view="tree", verbose_level=2)
    out: dict[str, FieldChange] = {}
    for levels in diff.values():
        for level in levels:
            keys = level.path(output_format="list")
            path = ".".join([prefix, *map(str, keys)]) if prefix else ".".join(map(str, keys))
            old = None if isinstance(level.t1, NotPresent) else level.t1
            new = None if isinstance(level.t2, NotPresent) else level.t2
            out[path] = FieldChange(
                path, old, new, forces_replacement=forces_replacement(path),
                sensitive=is_sensitive(old) or is_sensitive(new),
            )
    return tuple(out[p] for p in sorted(out))


def matches_prefix(path: str, prefixes: tuple[str, ...]) -> bool:
    """True if `path` is one of `prefixes` or lies under one of them."""
    return any(path == p or path.startswith(p + ".") for p in prefixes)
