"""What substratus manages in an object: the fields server-side apply records for field manager
`substratus` (metadata.managedFields, in the fieldsV1 format), and a digest of their values. An
annotation or a label another tool adds is not among them, so it is not drift; another tool's
change of one of them is (its new value, or the field passing to that tool, changes the digest)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from substratus_providers.kubernetes.client import FIELD_MANAGER


def content_digest(objects: Sequence[Mapping[str, Any]]) -> str:
    """One digest of what substratus manages in each object, with its uid (an object made anew
    by someone else is a change too)."""
    parts = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        parts.append([obj.get("kind"), meta.get("uid", ""), project(obj, owned_fields(obj))])
    encoded = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(encoded).hexdigest()


def owned_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fieldsV1 set substratus's server-side applies own in `obj` (empty: none)."""
    out: dict[str, Any] = {}
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply":
            _merge(out, entry.get("fieldsV1") or {})
    return out


def project(value: Any, fields: Mapping[str, Any]) -> Any:
    """`value` restricted to `fields` (fieldsV1: `f:<name>` a field, `k:<json>` a list item by
    its keys, `v:<json>` a set item by value, `i:<n>` an item by position, `.` the item itself).
    No sub-fields: the whole value (a scalar, or a map or list owned as one)."""
    if not fields:
        return value
    if isinstance(value, dict):
        return {name[2:]: project(value[name[2:]], sub) for name, sub in fields.items()
                if name.startswith("f:") and name[2:] in value}
    if isinstance(value, list):
        items = []
        for name, sub in fields.items():
            if name.startswith("k:"):
                keys = json.loads(name[2:])
                items += [project(item, sub) for item in value if isinstance(item, dict)
                          and all(item.get(k) == v for k, v in keys.items())]
            elif name.startswith("v:"):
                wanted = json.loads(name[2:])
                items += [item for item in value if item == wanted]
            elif name.startswith("i:") and int(name[2:]) < len(value):
                items.append(project(value[int(name[2:])], sub))
        return items
    return value


def _merge(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    for name, sub in more.items():
        if isinstance(sub, Mapping):
            _merge(into.setdefault(name, {}), sub)
