"""What a kubernetes plan shows: the changes applying a resource's manifests would make to the
objects read, each with its reason. An object whose normalized live form matches its manifest
costs no request; any other is compared with a server-side apply dry run's answer (or, where
another field manager's edit makes that apply impossible, the answer of the one that takes the
object back: see workloads.write)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from substratus_cli.action import Action, FieldChange
from substratus_cli.diff import field_changes, spec_hash
from substratus_cli.errors import ProviderError
from substratus_cli.provider import PlanItem, PlannedChange
from substratus_cli.resource import Resource
from substratus_providers.kubernetes.desired import Desired
from substratus_providers.kubernetes.errors import KubernetesError
from substratus_providers.kubernetes.live import Obj, key, objects_of
from substratus_providers.kubernetes.manifests import SPEC_HASH, VERSION, uploads
from substratus_providers.kubernetes.normalize import normalize

# Annotations that say which spec and version an object was written for: they change with
# every change, and the change itself is what a plan shows.
QUIET_PATHS = (f"metadata.annotations.{SPEC_HASH}", f"metadata.annotations.{VERSION}")
# The server's answer to a server-side apply dry run of a manifest.
DryRun = Callable[[Obj], Obj]


def planned_change(dry_run: DryRun, item: PlanItem, r: Resource, want: Desired) -> PlannedChange:
    """The change that turns the objects `item` was read with into `want`'s manifests."""
    notes, details = want.notes, want.details
    status, private = want.planned_status, want.planned.to_private()
    live = objects_of(item.live)
    if not live:
        return PlannedChange(item.address, Action.CREATE, "", (), status, notes, private,
                             details)
    changes: list[FieldChange] = []
    replace = False
    wanted = {m["kind"]: m for m in want.manifests}
    for kind, manifest in wanted.items():
        obj = live.get(kind)
        if obj is None:
            changes.append(FieldChange(key(manifest), None, "(new object)"))
            replace = replace or kind == "Job"
            continue
        try:
            diff = object_diff(dry_run, manifest, obj)
        except KubernetesError as e:
            raise refused(item, manifest, e) from None
        changes.extend(diff)
        replace = replace or (kind == "Job" and bool(diff))
    for kind, obj in live.items():
        if kind not in wanted:
            changes.append(FieldChange(key(obj), "(object)", None, forces_replacement=True))
            replace = True
    if not changes:
        return PlannedChange(item.address, Action.NOOP, "", (), status, notes, private, details)
    action = Action.REPLACE if replace else Action.UPDATE
    return PlannedChange(item.address, action, _reason(r, live, want, replace),
                         tuple(changes), status, notes, private, details)


def refused(item: PlanItem, manifest: Obj, e: KubernetesError) -> ProviderError:
    """A plan error for a dry run the cluster refused (a policy, a webhook, a permission)."""
    meta = manifest.get("metadata") or {}
    return ProviderError(
        f"cannot plan {item.address}: the cluster refused a dry run of the change to "
        f"{manifest.get('kind')} {meta.get('namespace')}/{meta.get('name')}: {e.detail}",
        hint=e.hint or "the cluster refuses what apply would send: change what the message "
                       "names (or the resource files), then plan again")


def object_diff(dry_run: DryRun, manifest: Obj, obj: Obj) -> tuple[FieldChange, ...]:
    """The fields of `obj` that applying `manifest` would change, as the server sees it."""
    have = normalize(obj, manifest)
    if normalize(manifest) == have:
        return ()
    kind = manifest["kind"]
    if kind == "Job":
        # Its template is immutable: the server refuses even a dry run of a change, and
        # any change means a new Job.
        after = normalize(manifest)
    else:
        answer = dry_run(manifest)
        after = normalize({"apiVersion": manifest["apiVersion"], "kind": kind, **answer},
                          manifest)
        if after == have:
            return ()
    changes = field_changes(_by_name(have), _by_name(after), prefix=kind,
                            forces_replacement=lambda p: kind == "Job")
    return tuple(c for c in changes
                 if not any(c.path == f"{kind}.{q}" for q in QUIET_PATHS))


def _reason(r: Resource, live: Mapping[str, Obj], want: Desired, replace: bool) -> str:
    primary = next(iter(live.values()))
    annotations = (primary.get("metadata") or {}).get("annotations") or {}
    same_spec = annotations.get(SPEC_HASH) == spec_hash(r.spec, r.labels)
    # The version covers the spec, the inputs' versions and the files' digest: the same one
    # means none of them changed, so what did changed outside (the engine's drift says so).
    new_version = annotations.get(VERSION) != want.version
    why = ""
    if same_spec and new_version and uploads(r):
        why = f"the files at {r.spec['source']['path']} changed"
    elif same_spec and new_version:
        live_inputs = _input_urls(primary)
        changed = sorted(role for role, url in want.inputs.items() if live_inputs.get(role) != url)
        if changed:
            why = "a new version of its " + " and ".join(changed) + " input"
        elif want.planned.image is not None and want.planned.image not in _images(primary):
            why = "image digest changed"
    if replace and primary.get("kind") == "Job":
        runs = "a Job cannot be changed, so it runs again"
        return f"{why}; {runs}" if why else runs
    wanted = [m["kind"] for m in want.manifests]
    if replace and primary.get("kind") not in wanted:
        # A path source is a ConfigMap, any other a Job: the one goes, the other comes.
        made = f"it is now made of a {' and a '.join(wanted)}, not a {primary.get('kind')}"
        return f"{why}; {made}" if why else made
    return why


def _images(obj: Obj) -> list[str]:
    template = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [str(c.get("image", "")) for c in template.get("containers") or []]


def _input_urls(obj: Obj) -> dict[str, str]:
    out = {}
    template = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    for c in template.get("containers") or []:
        for e in c.get("env") or []:
            name = str(e.get("name", ""))
            if name.startswith("SUBSTRATUS_INPUT_") and name.endswith("_URL"):
                out[name.removeprefix("SUBSTRATUS_INPUT_").removesuffix("_URL").lower()] = \
                    str(e.get("value", ""))
    return out


def _by_name(value: Any) -> Any:
    """Lists of named items (containers, env, ports, volumes) as maps by name, so a plan says
    `containers.server.env.PARAM_X.value`, not `containers.0.env.3.value`."""
    if isinstance(value, dict):
        return {k: _by_name(v) for k, v in value.items()}
    if isinstance(value, list):
        names = [v.get("name") for v in value if isinstance(v, dict)]
        if value and len(names) == len(value) and all(names) and len(set(names)) == len(names):
            return {v["name"]: _by_name({k: x for k, x in v.items() if k != "name"})
                    for v in value}
        return [_by_name(v) for v in value]
    return value
