"""Planning: read live state through the providers in batches, diff, and build a Plan."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from substratus_cli import dispatch
from substratus_cli.action import Action
from substratus_cli.address import Address
from substratus_cli.diff import spec_hash
from substratus_cli.errors import SubstratusError
from substratus_cli.graph import Graph
from substratus_cli.plan import (
    DESTROY_REQUESTED,
    REPLACE_REQUESTED,
    Change,
    Drift,
    Plan,
    Target,
    values,
)
from substratus_cli.provider import LiveObject, PlanItem, Registry, StepProgress, unwatched
from substratus_cli.resource import Resource
from substratus_cli.state import Inventory, InventoryEntry


@dataclasses.dataclass(frozen=True)
class PlanOptions:
    destroy: bool = False
    targets: tuple[Address, ...] = ()
    replace: tuple[Address, ...] = ()
    # Terraform's -refresh-only: plan only bringing the state up to what is live, no changes.
    refresh_only: bool = False


# How a refresh-only plan's drift reason ends when the state forgets the entry.
FORGOTTEN = "the state forgets it"


class UnmanagedObjectError(SubstratusError):
    """Objects exist at declared addresses but substratus (this workspace) does not manage them."""


def build_plan(*, resources: Sequence[Resource], registry: Registry, inventory: Inventory | None,
               target: Target, options: PlanOptions,
               environment: Resource | None = None,
               progress: Callable[[Address], StepProgress] = unwatched) -> Plan:
    lineage = inventory.lineage if inventory else ""
    entries = inventory.entries if inventory else {}
    declared = {r.address: r for r in resources}
    desired = {} if options.destroy else declared
    inventoried = set(entries)
    live = dispatch.read_live(registry, (declared.keys() | inventoried), lineage,
                              resources=resources, recorded=recorded_statuses(entries))
    _refuse_unmanaged(live, lineage, declared)

    addresses = sorted(desired.keys() | live.keys())
    planned = dispatch.plan(registry, [PlanItem(a, desired.get(a), live.get(a)) for a in addresses],
                            resources, progress)

    deps, recorded = _dependencies(declared if not options.destroy else {}, entries)
    changes: dict[Address, Change] = {}
    for a in addresses:
        pc = planned[a]
        action, reason = pc.action, pc.reason
        if a in options.replace and action in (Action.NOOP, Action.UPDATE):
            action, reason = Action.REPLACE, REPLACE_REQUESTED
        if options.destroy and action is Action.DELETE:
            reason = DESTROY_REQUESTED
        changes[a] = Change(
            address=a, provider=registry[a.kind].name, action=action, reason=reason,
            field_changes=pc.field_changes, desired=desired.get(a), live=live.get(a),
            planned_status=pc.planned_status, notes=pc.notes, details=pc.details, cost=pc.cost,
            private=pc.private,
        )
    changes = _with_order(changes, deps, recorded)
    if options.targets:
        changes = _targeted(changes, deps, options)
    if options.refresh_only:
        scope = _scope(deps, options)
        drift, refresh = _refresh_only(changes, live, entries, desired, scope)
        return Plan(target=target, changes=(), drift=tuple(drift), refresh=tuple(refresh),
                    environment=environment, documents=tuple(resources), refresh_only=True)
    order = _apply_order(changes)
    drift = _drift(changes, live, entries, desired)
    changes = _explained(changes, drift)
    refresh = _refresh(changes, live, entries, set(changes))
    return Plan(target=target, changes=tuple(changes[a] for a in order), drift=tuple(drift),
                destroy=options.destroy, refresh=tuple(refresh), environment=environment,
                documents=tuple(resources))


def recorded_statuses(entries: Mapping[Address, InventoryEntry]) -> dict[Address, Mapping[str, Any]]:
    """The status each address had at its last apply (where a provider finds it, see ReadRequest)."""
    return {a: e.status for a, e in entries.items()}


def _refuse_unmanaged(live: Mapping[Address, LiveObject], lineage: str,
                      declared: Mapping[Address, Resource]) -> None:
    problems = []
    for a, obj in sorted(live.items()):
        if obj.owner == lineage and lineage:
            continue
        r = declared.get(a)
        where = f" ({r.file}:{r.line})" if r else ""
        owner = ("not managed by substratus" if obj.owner is None
                 else f"managed by another substratus workspace (part-of {obj.owner})")
        objects = f" ({obj.status['objects']})" if obj.status.get("objects") else ""
        problems.append(f"  {a}{where}: exists{objects} and is {owner}")
    if problems:
        lost = not lineage and any(obj.owner for obj in live.values())
        raise UnmanagedObjectError(
            "refusing to change objects substratus does not own:\n" + "\n".join(problems),
            hint=("this workspace has no state: if it was lost, `substratus import` shows these "
                  "objects' ownership labels and adopts them" if lost else
                  "rename the resource, or delete the existing object yourself; substratus never "
                  "adopts or deletes objects without its ownership labels"))


def _dependencies(declared: Mapping[Address, Resource], entries: Mapping[Address, InventoryEntry],
                  ) -> tuple[dict[Address, set[Address]], dict[Address, set[Address]]]:
    """(current, recorded): references in the files (else as recorded for what left them), and
    the references recorded at the last apply, which only order deletes."""
    recorded = {a: set(e.deps) for a, e in entries.items()}
    current = dict(recorded)
    for a, r in declared.items():
        current[a] = set(r.refs)
    return current, recorded


def _with_order(changes: dict[Address, Change], deps: Mapping[Address, set[Address]],
                recorded: Mapping[Address, set[Address]]) -> dict[Address, Change]:
    """Creates and updates wait for their dependencies; a delete waits for everything that uses
    it now or used it at the last apply (a server stops using a model before the model goes)."""
    out = {}
    for a, c in changes.items():
        if c.action is Action.DELETE:
            after = {d for d in changes if d != a
                     and (a in deps.get(d, ()) or a in recorded.get(d, ()))}
        else:  # never wait for a delete: the delete waits for this one instead
            after = {d for d in deps.get(a, ())
                     if d in changes and changes[d].action is not Action.DELETE}
        out[a] = dataclasses.replace(c, depends_on=tuple(sorted(after)))
    return out


def _targeted(changes: dict[Address, Change], deps: Mapping[Address, set[Address]],
              options: PlanOptions) -> dict[Address, Change]:
    keep = _scope(deps, options)
    assert keep is not None
    return {a: dataclasses.replace(c, depends_on=tuple(d for d in c.depends_on if d in keep))
            for a, c in changes.items() if a in keep}


def _scope(deps: Mapping[Address, set[Address]], options: PlanOptions) -> set[Address] | None:
    """What --target reaches: the targets and what they depend on (for a destroy, what depends
    on them); None without --target: everything."""
    if not options.targets:
        return None
    graph = Graph(deps) if not options.destroy else Graph(deps).reversed()
    return set(graph.closure(options.targets))


def _apply_order(changes: Mapping[Address, Change]) -> list[Address]:
    return Graph({a: c.depends_on for a, c in changes.items()}).order()


def changed_outside(obj: LiveObject, entry: InventoryEntry) -> bool:
    """Whether what substratus manages in `obj` changed since the last apply recorded `entry`:
    its content digest where the provider gives one (another tool's annotation or label is not
    drift), else any write (the fingerprint). The fingerprint alone tells a saved plan's
    staleness."""
    if obj.content and entry.content:
        return obj.content != entry.content
    return obj.fingerprint != entry.fingerprint


def _drift(changes: Mapping[Address, Change], live: Mapping[Address, LiveObject],
           entries: Mapping[Address, InventoryEntry],
           desired: Mapping[Address, Resource]) -> list[Drift]:
    """What changed outside since the last apply and the plan puts back: nothing where the plan
    changes nothing (what changed outside, if anything, already matches the files)."""
    out = []
    for a, c in changes.items():
        entry = entries.get(a)
        if entry is None or entry.pending is not None or c.action is Action.NOOP:
            continue
        obj = live.get(a)
        if obj is not None and not changed_outside(obj, entry):
            continue
        r = desired.get(a)
        unchanged_files = r is not None and spec_hash(r.spec, r.labels) == entry.spec_hash
        applied = (values(r.spec, r.labels, entry.status) if r is not None and unchanged_files
                   else values(None, None, entry.status))
        if obj is None:
            out.append(Drift(a, "deleted outside substratus since the last apply",
                             applied=applied))
            continue
        out.append(Drift(a, "changed outside substratus since the last apply",
                         c.field_changes if unchanged_files else (), applied=applied))
    return out


# How many changed fields a change's reason names at most.
REASON_FIELDS = 3


def _explained(changes: dict[Address, Change], drift: Sequence[Drift]) -> dict[Address, Change]:
    """A change its provider gave no reason for, whose fields changed outside substratus (the
    files did not change since the last apply), says which."""
    out = dict(changes)
    for d in drift:
        c = out.get(d.address)
        if c is None or c.reason or not d.field_changes:
            continue
        paths = list(dict.fromkeys(f.path for f in d.field_changes))
        named = ", ".join(paths[:REASON_FIELDS])
        more = f" and {len(paths) - REASON_FIELDS} more" if len(paths) > REASON_FIELDS else ""
        out[d.address] = dataclasses.replace(c, reason=f"changed outside substratus: {named}"
                                                       f"{more}")
    return out


def _refresh_only(changes: Mapping[Address, Change], live: Mapping[Address, LiveObject],
                  entries: Mapping[Address, InventoryEntry], desired: Mapping[Address, Resource],
                  scope: set[Address] | None) -> tuple[list[Drift], list[Address]]:
    """A refresh-only plan: each inventory entry the live objects no longer match, and what
    refreshing it does to the state. An object changed outside gets its fingerprint, content
    digest and status recorded (the spec last applied stays: the next plan still puts the object back to the
    files); one that is gone is forgotten (the next plan creates it). Entries marked pending
    (an operation did not finish) are left to the next apply, unless their object is gone."""
    out: list[Drift] = []
    refresh: list[Address] = []
    for a, entry in sorted(entries.items()):
        if scope is not None and a not in scope:
            continue
        obj = live.get(a)
        if obj is None:
            refresh.append(a)
            reason = "deleted outside substratus since the last apply" if entry.pending is None \
                else f"not found (its {entry.pending.operation} did not finish)"
            out.append(Drift(a, f"{reason}: {FORGOTTEN}"))
        elif entry.pending is None and changed_outside(obj, entry):
            refresh.append(a)
            c = changes.get(a)
            r = desired.get(a)
            unchanged_files = r is not None and spec_hash(r.spec, r.labels) == entry.spec_hash
            out.append(Drift(a, "changed outside substratus since the last apply: the state "
                                "records it as it is now",
                             c.field_changes if c is not None and unchanged_files else ()))
    return out, refresh


def _refresh(changes: Mapping[Address, Change], live: Mapping[Address, LiveObject],
             entries: Mapping[Address, InventoryEntry], planned: set[Address]) -> list[Address]:
    """No-op resources whose inventory entry is missing, pending or out of date; vanished entries."""
    out = []
    for a, c in changes.items():
        if c.action is not Action.NOOP:
            continue
        entry = entries.get(a)
        obj = live.get(a)
        r = c.desired
        if obj is None or r is None:
            continue
        if (entry is None or entry.pending is not None or entry.fingerprint != obj.fingerprint
                or entry.content != (obj.content or None)
                or entry.spec_hash != spec_hash(r.spec, r.labels)):
            out.append(a)
    for a in entries:
        if a not in live and a not in planned:
            out.append(a)
    return sorted(out)
