"""The live side: which Kubernetes objects make up each resource, read with one LIST per
(object kind, namespace), and the LiveObject the engine sees for them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from substratus_cli.address import Address
from substratus_cli.provider import LiveObject
from substratus_providers.kubernetes.client import Client
from substratus_providers.kubernetes.managed import content_digest
from substratus_providers.kubernetes.manifests import (
    KIND_LABEL,
    NAME_LABEL,
    PART_OF,
    SERVER_PORT,
    VERSION,
    object_name,
)
from substratus_providers.kubernetes.normalize import normalize

Obj = dict[str, Any]
# The object kinds each resource kind may be made of, the one that stands for it first.
OBJECT_KINDS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "Dataset": (("batch/v1", "Job"), ("v1", "ConfigMap")),
    "Model": (("batch/v1", "Job"), ("v1", "ConfigMap")),
    "ModelServer": (("apps/v1", "Deployment"), ("v1", "Service")),
    "Notebook": (("apps/v1", "StatefulSet"), ("v1", "Service")),
}


def key(obj: Mapping[str, Any]) -> str:
    """`Kind/name`: how the plan names one object of a resource."""
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


# A LIST answer kept for the other resource kinds made of the same object kind (a Job list
# serves Datasets and Models): (apiVersion, object kind, namespace) -> items.
Lists = dict[tuple[str, str, str], list[Obj]]


def list_owned(client: Client, kind: str, namespace: str, part_of: str,
               lists: Lists | None = None) -> dict[Address, dict[str, Obj]]:
    """Every object of this workspace that makes up a `kind` resource in `namespace`, by address,
    then by object kind. One LIST per object kind, for every resource kind made of it: with
    `lists` kept across the reads of one plan, Jobs, ConfigMaps and Services are listed once
    per namespace, not once per resource kind."""
    found: dict[Address, dict[str, Obj]] = {}
    if not part_of:  # nothing was applied yet, so nothing can carry our label
        return found
    for api_version, object_kind in OBJECT_KINDS[kind]:
        items = _listed(client, api_version, object_kind, namespace, part_of,
                        {} if lists is None else lists)
        for item in items:
            item_labels = (item.get("metadata") or {}).get("labels") or {}
            name = item_labels.get(NAME_LABEL)
            if name and item_labels.get(KIND_LABEL) == kind:
                found.setdefault(Address(kind, namespace, name), {})[object_kind] = item
    return found


def _listed(client: Client, api_version: str, object_kind: str, namespace: str, part_of: str,
            lists: Lists) -> list[Obj]:
    slot = (api_version, object_kind, namespace)
    if slot not in lists:
        kinds = sorted(k for k, made_of in OBJECT_KINDS.items()
                       if (api_version, object_kind) in made_of)
        selector = f"{PART_OF}={part_of},{KIND_LABEL} in ({','.join(kinds)})"
        lists[slot], _ = client.list(api_version, object_kind, namespace, label_selector=selector)
    return lists[slot]


def get_any(client: Client, address: Address) -> dict[str, Obj]:
    """The objects at the names `address` would use, owned or not (one GET per object kind):
    how an object someone else made under our name is found before we would overwrite it."""
    out = {}
    name = object_name(address.kind, address.name)
    for api_version, object_kind in OBJECT_KINDS[address.kind]:
        obj = client.get(api_version, object_kind, address.namespace, name)
        if obj is not None:
            out[object_kind] = {"apiVersion": api_version, "kind": object_kind, **obj}
    return out


def live_object(address: Address, objects: Mapping[str, Obj]) -> LiveObject:
    """The engine's view: labels of the object that stands for the resource, a fingerprint that
    changes when anyone changes a spec or metadata (generation; resourceVersion for kinds without
    one, so a controller's status updates never read as a change: a saved plan's staleness), the
    digest of the fields substratus manages (drift, see managed.py), and outputs."""
    order = [k for _, k in OBJECT_KINDS[address.kind] if k in objects]
    primary = objects[order[0]]
    meta = primary.get("metadata") or {}
    parts = []
    for k in order:
        m = objects[k].get("metadata") or {}
        parts.append(f"{k}:{m.get('uid', '')}:{m.get('generation') or m.get('resourceVersion', '')}")
    status: dict[str, Any] = {"objects": ", ".join(key(objects[k]) for k in order)}
    version = (meta.get("annotations") or {}).get(VERSION)
    if version:
        status["version"] = version
    data = primary.get("data") or {}
    for field in ("digest", "artifact"):
        if primary.get("kind") == "ConfigMap" and data.get(field):
            status[field] = data[field]
    if primary.get("kind") == "Job":
        env = {e.get("name"): e.get("value") for c in _containers(primary) for e in c.get("env", [])}
        if env.get("SUBSTRATUS_ARTIFACTS_URL"):
            status["artifact"] = env["SUBSTRATUS_ARTIFACTS_URL"]
    if address.kind == "ModelServer" and "Service" in objects:
        service = objects["Service"]["metadata"]
        status["endpoint"] = (f"http://{service['name']}.{address.namespace}.svc.cluster.local"
                              f":{SERVER_PORT}")
    return LiveObject(address, {k: normalize(objects[k]) for k in order}, status,
                      dict(meta.get("labels") or {}), ";".join(parts),
                      content_digest([objects[k] for k in order]),
                      private={"objects": {k: objects[k] for k in order}})


def objects_of(live: LiveObject | None) -> dict[str, Obj]:
    """The API objects a live object was read from, by object kind (its first is the primary)."""
    return dict(live.private.get("objects") or {}) if live is not None else {}


def _containers(obj: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    return ((((obj.get("spec") or {}).get("template") or {}).get("spec") or {})
            .get("containers") or [])
