"""Saved plans: `plan --out FILE` writes them, `apply FILE` and `show FILE` read them back.

A saved plan is its own JSON format (`format_version` 2; `show --json` renders it the way
`plan --json` does): the desired documents (secret references, never values), the target it was
made for with the inventory serial, and per change the action, what was read (with its live
fingerprint) and the provider's private data for apply. Apply refuses it when any of those moved.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from substratus_cli import __version__
from substratus_cli.action import UNKNOWN, Action, FieldChange
from substratus_cli.address import Address
from substratus_cli.cost import HourlyCost
from substratus_cli.errors import StalePlanError, UsageError
from substratus_cli.plan import Change, Drift, Plan, Target
from substratus_cli.provider import LiveObject
from substratus_cli.resource import Resource
from substratus_cli.secrets import redact
from substratus_cli.state import Inventory

KIND = "substratus-plan"
FORMAT_VERSION = 2
_UNKNOWN = {"$unknown": True}


def save(plan: Plan, path: Path) -> None:
    doc = {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "substratus_version": __version__,
        "target": dataclasses.asdict(plan.target),
        "destroy": plan.destroy,
        "environment": _resource_to_json(plan.environment) if plan.environment else None,
        "documents": [_resource_to_json(r) for r in plan.documents],
        "changes": [_change_to_json(c) for c in plan.changes],
        "drift": [{"address": str(d.address), "reason": d.reason,
                   "field_changes": [_field_change_to_json(f) for f in d.field_changes],
                   "applied": redact(d.applied)}
                  for d in plan.drift],
        "refresh": [str(a) for a in plan.refresh],
        "refresh_only": plan.refresh_only,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def load(path: Path) -> Plan:
    try:
        doc = json.loads(path.read_text())
        if doc.get("kind") != KIND:
            raise KeyError("kind")
        if doc.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version {doc.get('format_version')}, this substratus reads "
                             f"{FORMAT_VERSION}")
        documents = {r.address: r for r in map(_resource_from_json, doc["documents"])}
        env = doc["environment"]
        return Plan(
            target=Target(**doc["target"]),
            changes=tuple(_change_from_json(c, documents) for c in doc["changes"]),
            drift=tuple(Drift(Address.parse(d["address"]), d["reason"],
                              tuple(map(_field_change_from_json, d["field_changes"])),
                              applied=d.get("applied"))
                        for d in doc["drift"]),
            destroy=bool(doc["destroy"]), refresh=tuple(map(Address.parse, doc["refresh"])),
            environment=_resource_from_json(env) if env else None,
            documents=tuple(documents.values()),
            refresh_only=bool(doc.get("refresh_only", False)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UsageError(f"{path} is not a saved substratus plan ({e})",
                         hint="make one with `substratus plan --out FILE`") from None


def check_fresh(plan: Plan, current: Target, inventory: Inventory | None,
                live: Mapping[Address, LiveObject]) -> None:
    """Refuse (exit 5) a plan made for another target or overtaken by any change since."""
    if plan.target.identity() != current.identity():
        raise StalePlanError(
            f"the saved plan was made for another target ({_describe(plan.target)}); "
            f"this run would apply it to {_describe(current)}")
    lineage = inventory.lineage if inventory else None
    serial = inventory.serial if inventory else None
    if plan.target.lineage and plan.target.lineage != lineage:
        raise StalePlanError(f"the saved plan was made for another state (lineage "
                             f"{plan.target.lineage}, found {lineage or 'none'})")
    if plan.target.serial != serial:
        raise StalePlanError(
            f"Saved plan is stale: the state changed since the plan was made (serial "
            f"{plan.target.serial} -> {serial})", hint="run `substratus plan` again")
    for c in plan.changes:
        if c.action is Action.NOOP:
            continue
        found = live[c.address].fingerprint if c.address in live else None
        if found != c.before_fingerprint:
            raise StalePlanError(
                f"Saved plan is stale: {c.address} changed since the plan was made "
                f"(fingerprint {c.before_fingerprint or 'absent'} -> {found or 'absent'})",
                hint="run `substratus plan` again")


def _describe(t: Target) -> str:
    return f"runtime {t.runtime}, state {t.state}" + (f", {t.endpoint}" if t.endpoint else "")


def _resource_to_json(r: Resource) -> dict[str, Any]:
    source = {"file": r.file, "line": r.line, **({"stack": r.stack} if r.stack else {})}
    return {**r.to_document(), "source": source, "refs": [str(a) for a in r.refs]}


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{what}: expected an object, found {type(value).__name__}")
    return value


def _resource_from_json(d: Mapping[str, Any]) -> Resource:
    meta = d["metadata"]
    return Resource(address=Address(d["kind"], meta["namespace"], meta["name"]),
                    spec=_mapping(d["spec"], "a document's spec"),
                    labels=_mapping(meta.get("labels", {}), "a document's labels"),
                    file=d["source"]["file"],
                    line=d["source"]["line"], refs=tuple(map(Address.parse, d["refs"])),
                    stack=d["source"].get("stack"))


def _change_to_json(c: Change) -> dict[str, Any]:
    live = c.live
    return {
        "address": str(c.address), "provider": c.provider, "action": c.action.value,
        "reason": c.reason, "field_changes": [_field_change_to_json(f) for f in c.field_changes],
        # What the plan read (no private data: apply reads the objects again).
        "live": None if live is None else {
            "spec": redact(dict(live.spec)), "status": redact(dict(live.status)),
            "labels": dict(live.labels), "fingerprint": live.fingerprint},
        "planned_status": {k: (_UNKNOWN if v is UNKNOWN else v)
                           for k, v in c.planned_status.items()},
        "notes": list(c.notes), "private": dict(c.private),
        "cost": c.cost.to_json() if c.cost is not None else None,
        "depends_on": [str(d) for d in c.depends_on],
    }


def _change_from_json(d: Mapping[str, Any], documents: Mapping[Address, Resource]) -> Change:
    address = Address.parse(d["address"])
    action = Action(d["action"])
    live = d["live"]
    return Change(
        address=address, provider=d["provider"], action=action, reason=d["reason"],
        field_changes=tuple(map(_field_change_from_json, d["field_changes"])),
        desired=documents.get(address) if action is not Action.DELETE else None,
        live=None if live is None else LiveObject(address, live["spec"], live["status"],
                                                  live["labels"], live["fingerprint"]),
        planned_status={k: (UNKNOWN if v == _UNKNOWN else v)
                        for k, v in d["planned_status"].items()},
        notes=tuple(d["notes"]), private=d["private"],
        cost=HourlyCost.from_json(d["cost"]) if d.get("cost") else None,
        depends_on=tuple(map(Address.parse, d["depends_on"])),
    )


def _field_change_to_json(f: FieldChange) -> dict[str, Any]:
    def value(v: Any) -> Any:
        return _UNKNOWN if v is UNKNOWN else redact(v)

    return {"path": f.path, "before": value(f.before), "after": value(f.after),
            "forces_replacement": f.forces_replacement, "sensitive": f.sensitive}


def _field_change_from_json(f: Mapping[str, Any]) -> FieldChange:
    def value(v: Any) -> Any:
        return UNKNOWN if v == _UNKNOWN else v

    return FieldChange(f["path"], value(f["before"]), value(f["after"]),
                       f["forces_replacement"], f["sensitive"])
