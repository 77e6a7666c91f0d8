"""The machine-readable plan (`plan --json`, `show --json`) in the shape of Terraform's `show -json`.

It is what github.com/hashicorp/terraform-json's `Plan` reads (tests/tfjson checks every golden
plan with it): `format_version` 1.0; per entry of `resource_changes` the `address`, `mode`
("managed"), `type` (the kind), `name`, `provider_name`, `action_reason` (Terraform's keyword,
left out where none fits, as Terraform does) and `change` with `actions`, `before`, `after`,
`after_unknown`, `before_sensitive`, `after_sensitive` and `replace_paths`; `resource_drift`
entries with the same fields, whose change reads from what the last apply left to what is live.
substratus's own fields stand beside them: `substratus_version`, `target`, `destroy`,
`refresh_only` (true: a `--refresh-only` plan, which changes only the state), `summary`,
`errored`; per change `kind`, `namespace`, `reason` (the words of the human plan), `notes`,
`depends_on`, `change.field_changes` and, where the provider prices it, `cost` (hourly, before
and after; `summary.cost` adds them up).

Values are shaped like a resource file (`metadata.labels`, `spec`, plus `status`), so a field
change's path indexes into them. A value known only after apply is left out of `after` and marked
`true` in `after_unknown`. A field that references a secret shows `(sensitive value)`, never the
reference, and is marked `true` in `before_sensitive`/`after_sensitive`, which mirror the values
the way Terraform's do: nested objects kept, other leaves left out, lists element by element, and
`false` for a value that is null.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from substratus_cli import __version__
from substratus_cli.action import UNKNOWN, Action, FieldChange
from substratus_cli.plan import REPLACE_REQUESTED, Change, Drift, Plan, values
from substratus_cli.secrets import SENSITIVE, is_sensitive, redact

FORMAT_VERSION = "1.0"

# Terraform's action_reason keywords (terraform-json's ActionReason constants) that fit ours.
REPLACE_BECAUSE_CANNOT_UPDATE = "replace_because_cannot_update"
REPLACE_BY_REQUEST = "replace_by_request"
DELETE_BECAUSE_NO_RESOURCE_CONFIG = "delete_because_no_resource_config"


def plan_to_json(plan: Plan) -> dict[str, Any]:
    s = plan.summary
    return {
        "format_version": FORMAT_VERSION,
        "substratus_version": __version__,
        "target": {"runtime": plan.target.runtime, "workdir": plan.target.workdir,
                   "state": plan.target.state, "artifacts": plan.target.artifacts},
        "destroy": plan.destroy,
        "refresh_only": plan.refresh_only,
        "resource_changes": [change_to_json(c, destroy=plan.destroy) for c in plan.changes],
        "resource_drift": [drift_to_json(d, plan.change_for(d.address)) for d in plan.drift],
        "summary": {"add": s.add, "change": s.change, "destroy": s.destroy,
                    **({"cost": _cost_summary(plan)} if plan.cost is not None else {})},
        "errored": False,
    }


def change_to_json(c: Change, *, destroy: bool = False) -> dict[str, Any]:
    after = None
    if c.desired is not None and c.action is not Action.DELETE:
        after = values(c.desired.spec, c.desired.labels, c.planned_status)
    doc = _resource(c)
    doc["change"] = {**_change(c.action.json_actions, c.before, after),
                     "replace_paths": [p.split(".") for p in c.replace_paths],
                     "field_changes": [field_change_to_json(f) for f in c.field_changes]}
    reason = action_reason(c, destroy=destroy)
    if reason is not None:
        doc["action_reason"] = reason
    doc.update({"reason": c.reason, "notes": list(c.notes),
                "depends_on": [str(d) for d in c.depends_on]})
    if c.cost is not None:
        doc["cost"] = c.cost.to_json()
    return doc


def _cost_summary(plan: Plan) -> dict[str, Any]:
    """The hourly cost change of the plan's priced changes (see substratus_cli.cost)."""
    cost = plan.cost
    assert cost is not None
    return {"hourly_delta": round(cost.delta, 6), "currency": cost.currency,
            "bases": list(cost.bases), "unpriced": cost.unpriced}


def action_reason(c: Change, *, destroy: bool = False) -> str | None:
    """Terraform's keyword for why: a replacement the provider planned is one it cannot do in
    place; --replace is by request; a delete outside `destroy` is of an address not in the files.
    Creates, updates and a destroy's deletes have none (nor do they in Terraform)."""
    if c.action is Action.REPLACE:
        return REPLACE_BY_REQUEST if c.reason == REPLACE_REQUESTED else REPLACE_BECAUSE_CANNOT_UPDATE
    if c.action is Action.DELETE and not destroy:
        return DELETE_BECAUSE_NO_RESOURCE_CONFIG
    return None


def drift_to_json(d: Drift, c: Change | None) -> dict[str, Any]:
    """A drift as Terraform's resource_drift entry: from what the last apply left (`before`: the
    status it recorded, and the spec and labels when the files have not changed since, else null)
    to what is live now (`after`; null and a delete when it was deleted outside)."""
    live = c.before if c is not None else None
    doc: dict[str, Any] = _resource(c) if c is not None else {
        "address": str(d.address), "mode": "managed", "type": d.address.kind,
        "kind": d.address.kind, "namespace": d.address.namespace, "name": d.address.name}
    doc["change"] = _change(["update"] if live is not None else ["delete"], d.applied, live)
    doc.update({"reason": d.reason,
                "field_changes": [field_change_to_json(f) for f in d.live_changes()]})
    return doc


def field_change_to_json(f: FieldChange) -> dict[str, Any]:
    def value(v: Any) -> Any:
        return None if v is UNKNOWN else redact(v)

    return {"path": f.path, "before": value(f.before), "after": value(f.after),
            "forces_replacement": f.forces_replacement, "sensitive": f.sensitive,
            "after_unknown": f.after is UNKNOWN}


def _resource(c: Change) -> dict[str, Any]:
    a = c.address
    return {"address": str(a), "mode": "managed", "type": a.kind, "kind": a.kind,
            "namespace": a.namespace, "name": a.name, "provider_name": c.provider}


def _change(actions: list[str], before: Mapping[str, Any] | None,
            after: Mapping[str, Any] | None) -> dict[str, Any]:
    unknown = after is not None and _has(after, _is_unknown)
    return {
        "actions": actions,
        "before": _shown(before),
        "after": _shown(after),
        "after_unknown": _marks(after, _is_unknown) if unknown else {},
        "before_sensitive": _marks(before, _is_secret),
        "after_sensitive": _marks(after, _is_secret),
    }


def _is_unknown(v: Any) -> bool:
    return v is UNKNOWN


def _is_secret(v: Any) -> bool:
    """A secret reference, or what a saved plan kept of one (it stores live values redacted)."""
    return isinstance(v, str) and (v == SENSITIVE or is_sensitive(v))


def _has(value: Any, marked: Callable[[Any], bool]) -> bool:
    if marked(value):
        return True
    if isinstance(value, Mapping):
        return any(_has(v, marked) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has(v, marked) for v in value)
    return False


def _marks(value: Any, marked: Callable[[Any], bool]) -> Any:
    """Terraform's unknownAsBool/SensitiveAsBool: `value`'s shape with `true` at the marked leaves;
    objects keep their nested objects and drop other leaves, lists keep every element."""
    if value is None:
        return False
    if marked(value):
        return True
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            m = _marks(v, marked)
            if m is not False:
                out[str(k)] = m
        return out
    if isinstance(value, list | tuple):
        return [_marks(v, marked) for v in value]
    return False


def _shown(value: Any) -> Any:
    """`value` as printed: unknowns left out (null in a list), secret references redacted."""
    if isinstance(value, Mapping):
        return {str(k): _shown(v) for k, v in value.items() if v is not UNKNOWN}
    if isinstance(value, list | tuple):
        return [None if v is UNKNOWN else _shown(v) for v in value]
    return redact(value)
