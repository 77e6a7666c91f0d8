"""Saved plans: `plan --out FILE` writes them, `apply FILE` and `show FILE` read them back.

A saved plan is the JSON plan plus a `substratus` section holding what apply needs: the desired
documents (secret references, never values), the target it was made for, the inventory serial and
the live fingerprint of every resource it changes. Apply refuses it when any of those moved.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from substratus_cli.action import UNKNOWN, Action, FieldChange
from substratus_cli.address import Address
from substratus_cli.exitcodes import StalePlanError, UsageError
from substratus_cli.plan import Change, Drift, Plan, Target
from substratus_cli.provider import LiveObject
from substratus_cli.render.json_plan import plan_to_json
from substratus_cli.resource import Resource
from substratus_cli.secrets import redact
from substratus_cli.state import Inventory

KIND = "substratus-plan"
_UNKNOWN = {"$unknown": True}


def save(plan: Plan, path: Path) -> None:
    doc = plan_to_json(plan)
    doc["substratus"] = {
        "kind": KIND,
        "target": dataclasses.asdict(plan.target),
        "environment": _resource_to_json(plan.environment) if plan.environment else None,
        "documents": [_resource_to_json(r) for r in plan.documents],
        "changes": [_change_internal(c) for c in plan.changes],
        "refresh": [str(a) for a in plan.refresh],
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False))
    os.replace(tmp, path)


def load(path: Path) -> Plan:
    try:
        doc = json.loads(path.read_text())
        internal = doc["substratus"]
        if internal.get("kind") != KIND:
            raise KeyError("kind")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{path} is not a saved substratus plan ({e})",
                         hint="make one with `substratus plan --out FILE`") from None
    documents = {r.address: r for r in map(_resource_from_json, internal["documents"])}
    changes = []
    for public, private in zip(doc["resource_changes"], internal["changes"], strict=True):
        changes.append(_change_from_json(public, private, documents))
    # The JSON reads drift from the last apply to live; a Drift holds it the plan's way round.
    drift = []
    for d in doc["resource_drift"]:
        as_read = Drift(Address.parse(d["address"]), d["reason"],
                        tuple(map(_field_change_from_json, d["field_changes"])))
        drift.append(dataclasses.replace(as_read, field_changes=as_read.live_changes()))
    env = internal.get("environment")
    return Plan(target=Target(**internal["target"]), changes=tuple(changes), drift=tuple(drift),
                destroy=bool(doc.get("destroy")), refresh=tuple(map(Address.parse, internal["refresh"])),
                environment=_resource_from_json(env) if env else None,
                documents=tuple(documents.values()))


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
    return {**r.to_document(), "source": {"file": r.file, "line": r.line},
            "refs": [str(a) for a in r.refs]}


def _resource_from_json(d: Mapping[str, Any]) -> Resource:
    meta = d["metadata"]
    return Resource(address=Address(d["kind"], meta["namespace"], meta["name"]), spec=d["spec"],
                    labels=meta.get("labels", {}), file=d["source"]["file"],
                    line=d["source"]["line"], refs=tuple(map(Address.parse, d["refs"])))


def _change_internal(c: Change) -> dict[str, Any]:
    return {"before_fingerprint": c.before_fingerprint,
            "before": redact(dict(c.before)) if c.before is not None else None,
            "planned_status": {k: (_UNKNOWN if v is UNKNOWN else v)
                               for k, v in c.planned_status.items()},
            "notes": list(c.notes)}


def _change_from_json(public: Mapping[str, Any], private: Mapping[str, Any],
                      documents: Mapping[Address, Resource]) -> Change:
    address = Address.parse(public["address"])
    actions = public["change"]["actions"]
    action = next(a for a in Action if a.json_actions == actions)
    return Change(
        address=address, provider=public["provider_name"], action=action,
        reason=public["action_reason"],
        field_changes=tuple(map(_field_change_from_json, public["change"]["field_changes"])),
        desired=documents.get(address) if action is not Action.DELETE else None,
        before=private["before"], before_fingerprint=private["before_fingerprint"],
        planned_status={k: (UNKNOWN if v == _UNKNOWN else v)
                        for k, v in private["planned_status"].items()},
        notes=tuple(private.get("notes", ())),
        depends_on=tuple(map(Address.parse, public["depends_on"])),
    )


def _field_change_from_json(f: Mapping[str, Any]) -> FieldChange:
    return FieldChange(f["path"], f["before"], UNKNOWN if f.get("after_unknown") else f["after"],
                       f["forces_replacement"], f["sensitive"])
