"""The machine-readable plan, in the shape of Terraform's `show -json` (format_version 1.0)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from substratus_cli import __version__
from substratus_cli.action import UNKNOWN, Action, FieldChange
from substratus_cli.plan import Change, Drift, Plan
from substratus_cli.secrets import redact, sensitive_paths

FORMAT_VERSION = "1.0"


def plan_to_json(plan: Plan) -> dict[str, Any]:
    s = plan.summary
    return {
        "format_version": FORMAT_VERSION,
        "substratus_version": __version__,
        "target": {"runtime": plan.target.runtime, "workdir": plan.target.workdir,
                   "state": plan.target.state, "artifacts": plan.target.artifacts},
        "destroy": plan.destroy,
        "resource_changes": [change_to_json(c) for c in plan.changes],
        "resource_drift": [drift_to_json(d) for d in plan.drift],
        "summary": {"add": s.add, "change": s.change, "destroy": s.destroy},
        "errored": False,
    }


def change_to_json(c: Change) -> dict[str, Any]:
    after: dict[str, Any] | None = None
    after_unknown: dict[str, Any] = {}
    if c.desired is not None and c.action is not Action.DELETE:
        status = {k: (None if v is UNKNOWN else v) for k, v in c.planned_status.items()}
        after = {"spec": redact(dict(c.desired.spec)), "labels": dict(c.desired.labels),
                 "status": status}
        unknown = {k: True for k, v in c.planned_status.items() if v is UNKNOWN}
        if unknown:
            after_unknown = {"status": unknown}
    return {
        "address": str(c.address),
        "kind": c.address.kind,
        "namespace": c.address.namespace,
        "name": c.address.name,
        "provider_name": c.provider,
        "change": {
            "actions": c.action.json_actions,
            "before": redact(dict(c.before)) if c.before is not None else None,
            "after": after,
            "after_unknown": after_unknown,
            "before_sensitive": _sensitive(c.before),
            "after_sensitive": _sensitive({"spec": c.desired.spec}
                                          if after and c.desired is not None else None),
            "replace_paths": [p.split(".") for p in c.replace_paths],
            "field_changes": [field_change_to_json(f) for f in c.field_changes],
        },
        "action_reason": c.reason,
        "notes": list(c.notes),
        "depends_on": [str(d) for d in c.depends_on],
    }


def drift_to_json(d: Drift) -> dict[str, Any]:
    """A drift's field changes read from the last apply (before) to what is live now (after)."""
    return {"address": str(d.address), "kind": d.address.kind, "name": d.address.name,
            "reason": d.reason,
            "field_changes": [field_change_to_json(f) for f in d.live_changes()]}


def field_change_to_json(f: FieldChange) -> dict[str, Any]:
    def value(v: Any) -> Any:
        return None if v is UNKNOWN else redact(v)

    return {"path": f.path, "before": value(f.before), "after": value(f.after),
            "forces_replacement": f.forces_replacement, "sensitive": f.sensitive,
            "after_unknown": f.after is UNKNOWN}


def _sensitive(value: Mapping[str, Any] | None) -> list[str]:
    return sensitive_paths(dict(value)) if value else []
