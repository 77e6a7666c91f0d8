"""The NodePool kind: GKE node pools through gke.py. A read is one LIST of node pools per cluster;
accelerator and spot force a replacement (FORCES_REPLACEMENT), as does another cluster; every
other field changes in place, one call per field (IN_PLACE). Ownership labels are the pool's
node labels (`config.labels`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import container_v1

from substratus_cli.action import Action, FieldChange
from substratus_cli.address import Address
from substratus_cli.diff import field_changes
from substratus_cli.errors import ProviderError
from substratus_cli.provider import (
    ApplyRequest,
    Batch,
    LiveObject,
    PlanItem,
    PlannedChange,
    Readiness,
    ReadRequest,
    ReadResponse,
)
from substratus_cli.resource import Resource
from substratus_providers.gcp import ownership
from substratus_providers.gcp.clusters import ref as cluster_ref
from substratus_providers.gcp.gke import GKE, NodePoolRef
from substratus_providers.gcp.places import ClusterPlace, Places, declared_place, pool_cluster
from substratus_providers.gcp.prices import pool_cost
from substratus_providers.gcp.specs import effective, fingerprint

# The node version and its upgrade state move as GKE upgrades the pool by itself.
VOLATILE = frozenset({"status", "status_message", "conditions", "version", "etag", "update_info"})
_Pool = container_v1.NodePool
_DRIVER = container_v1.GPUDriverInstallationConfig.GPUDriverVersion
DRIVER = "LATEST"  # the GPU driver GKE installs when the NodePool does not say

# The node pool fields node_pool_spec returns that GKE changes in place, and the call that does
# it. A new machine type is applied in place by GKE migrating the nodes (a surge upgrade: every
# node is recreated, the node pool stays). `nodeCount` (setSize) is not in node_pool_spec: with
# autoscaling on, the live count is the autoscaler's, not a declared value.
IN_PLACE: Mapping[str, str] = {
    "machineType": "updateNodePool",
    "zones": "updateNodePool",
    "taints": "updateNodePool",
    "autoscaling": "setAutoscaling",
    "nodeCount": "setSize",
}
# Fields whose change GKE cannot apply to a node pool: it must be deleted and created again (the
# accelerator's GPU driver too: GKE installs it when it creates the nodes).
FORCES_REPLACEMENT: frozenset[str] = frozenset({"accelerator", "spot"})

_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule",
            "NO_EXECUTE": "NoExecute"}


def node_pool_spec(pool: _Pool) -> dict[str, Any]:
    """The fields a NodePool resource file declares, in its words (`zones` are GKE's
    locations, taint effects are spelled as in Kubernetes)."""
    config = pool.config
    accelerator = config.accelerators[0] if config.accelerators else None
    scaling = pool.autoscaling
    return {
        "machineType": config.machine_type,
        "accelerator": {"type": accelerator.accelerator_type,
                        "count": int(accelerator.accelerator_count),
                        "gpuDriverVersion": driver_version(accelerator)} if accelerator else None,
        "spot": bool(config.spot),
        "autoscaling": {"min": scaling.min_node_count, "max": scaling.max_node_count}
        if scaling.enabled else None,
        "zones": sorted(pool.locations),
        "taints": [{"key": t.key, "value": t.value,
                    "effect": _EFFECTS.get(t.effect.name, t.effect.name)}
                   for t in config.taints],
    }


def driver_version(accelerator: container_v1.AcceleratorConfig) -> str:
    """The GPU driver GKE installs, in the NodePool's words: GKE's unspecified installs none,
    which is what INSTALLATION_DISABLED says."""
    version = _DRIVER(accelerator.gpu_driver_installation_config.gpu_driver_version)
    unspecified = version == _DRIVER.GPU_DRIVER_VERSION_UNSPECIFIED
    return "INSTALLATION_DISABLED" if unspecified else str(version.name)


def node_pool_message(spec: Mapping[str, Any], initial_node_count: int = 0) -> _Pool:
    """The NodePool to create from node_pool_spec's fields (the inverse of node_pool_spec)."""
    effects = {v: k for k, v in _EFFECTS.items()}
    accelerator = spec.get("accelerator")
    scaling = spec.get("autoscaling")
    return _Pool(
        initial_node_count=initial_node_count,
        locations=list(spec.get("zones") or []),
        autoscaling=container_v1.NodePoolAutoscaling(
            enabled=True, min_node_count=scaling["min"], max_node_count=scaling["max"])
        if scaling else None,
        config=container_v1.NodeConfig(
            machine_type=spec["machineType"], spot=bool(spec.get("spot")),
            accelerators=[container_v1.AcceleratorConfig(
                accelerator_type=accelerator["type"], accelerator_count=accelerator["count"],
                gpu_driver_installation_config=container_v1.GPUDriverInstallationConfig(
                    gpu_driver_version=getattr(_DRIVER, accelerator.get("gpuDriverVersion") or DRIVER)))]
            if accelerator else [],
            taints=[container_v1.NodeTaint(key=t["key"], value=t.get("value", ""),
                                           effect=effects[t["effect"]])
                    for t in spec.get("taints") or []]))


def ref(place: ClusterPlace, name: str) -> NodePoolRef:
    return NodePoolRef(cluster_ref(place), name)


def pool_spec(pool: _Pool, place: ClusterPlace) -> dict[str, Any]:
    return {"cluster": {"name": place.name}, **node_pool_spec(pool)}


def live_object(address: Address, pool: _Pool, place: ClusterPlace) -> LiveObject:
    status: dict[str, Any] = {"cluster": place.path, "state": pool.status.name}
    if pool.status_message:
        status["message"] = pool.status_message
    return LiveObject(address, pool_spec(pool, place), status,
                      ownership.core_labels(pool.config.labels),
                      fingerprint(_Pool.to_dict(pool), VOLATILE))


def wanted(r: Resource, live: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The pool as declared, in pool_spec's shape. Undeclared zones are GKE's choice (the
    cluster's); undeclared taints mean none."""
    want = effective(r)
    want["taints"] = want.get("taints") or []
    if want.get("zones") is None:
        want["zones"] = list(live["zones"]) if live is not None else None
    else:
        want["zones"] = sorted(want["zones"])
    return want


def _driver_note(want: Mapping[str, Any]) -> tuple[str, ...]:
    accelerator = want.get("accelerator")
    if not accelerator:
        return ()
    version = accelerator.get("gpuDriverVersion") or DRIVER
    if version == "INSTALLATION_DISABLED":
        return ("gpu driver: none installed by GKE (spec.accelerator.gpuDriverVersion: "
                "INSTALLATION_DISABLED): install one yourself before a pod can use the GPUs",)
    return (f"gpu driver: GKE installs the {version} driver on every node "
            "(spec.accelerator.gpuDriverVersion)",)


def initial_node_count(want: Mapping[str, Any]) -> int:
    """Nodes per zone at creation: autoscaling's minimum, or one for a pool without it."""
    scaling = want.get("autoscaling")
    return int(scaling["min"]) if scaling else 1


def with_delete_cost(change: PlannedChange, live: LiveObject | None) -> PlannedChange:
    """A node pool's delete with what it stops costing an hour (from its live spec and cluster)."""
    if change.action is not Action.DELETE or change.address.kind != "NodePool" or live is None:
        return change
    place = ClusterPlace.parse(str(live.status.get("cluster", "")))
    if place is None:
        return change
    return dataclasses.replace(change, cost=pool_cost(live.spec, None, place.location))


def _replaced(path: str) -> bool:
    return path.split(".")[1] in FORCES_REPLACEMENT | {"cluster"}


class NodePools:
    """The NodePool kind's KindHandler."""

    def __init__(self, gke: Callable[[], GKE], part_of: str) -> None:
        self._gke = gke
        self.part_of = part_of

    @property
    def gke(self) -> GKE:
        return self._gke()

    def read(self, request: ReadRequest) -> ReadResponse:
        places = Places(request.resources.values(), request.recorded)
        candidates = {a: places.clusters_of(a) for a in request.addresses}
        clusters = sorted({p for ps in candidates.values() for p in ps})
        listed = {p: self._pools(p) for p in clusters}
        objects: dict[Address, LiveObject] = {}
        for a, ps in candidates.items():
            for p in ps:
                found = listed[p].get(a.name)
                if found is not None:
                    objects[a] = live_object(a, found, p)
                    break
        for p, pools in listed.items():  # also what this workspace made that no one asked for
            for pool in pools.values():
                if ownership.owned_by(pool.config.labels, request.part_of):
                    a = Address("NodePool", ownership.namespace_of(pool.config.labels), pool.name)
                    objects.setdefault(a, live_object(a, pool, p))
        return ReadResponse(objects, requests=len(clusters))

    def plan(self, item: PlanItem, batch: Batch) -> PlannedChange:
        a, r, live = item.address, item.desired, item.live
        assert r is not None, f"{a}: deletes are planned by plan_batch"
        # The pool goes where its cluster's resource file puts the cluster.
        cluster = batch.desired(pool_cluster(r))
        assert cluster is not None, f"{a} without its cluster's resource"
        place = declared_place(cluster)
        status = {"cluster": place.path}

        def planned(action: Action, reason: str = "",
                    changes: tuple[FieldChange, ...] = ()) -> PlannedChange:
            # The cluster is shown, and apply creates the pool there whatever the files say then.
            if action is Action.NOOP:
                return PlannedChange(a, action, reason, changes, status, private=status)
            want = wanted(r, live.spec if live is not None and action is Action.UPDATE else None)
            cost = pool_cost(live.spec if live is not None else None, want, place.location)
            return PlannedChange(a, action, reason, changes, status, notes=_driver_note(want),
                                 cost=cost, private=status)

        if live is None:
            return planned(Action.CREATE)
        if live.status.get("state") == "ERROR":
            return planned(Action.REPLACE, "GKE reports it failed: "
                           f"{live.status.get('message') or 'status ERROR'}")
        changes = list(field_changes(live.spec, wanted(r, live.spec),
                                     forces_replacement=_replaced))
        was = ClusterPlace.parse(str(live.status.get("cluster", "")))
        if was is not None and was != place and was.name == place.name:
            changes.append(FieldChange("spec.cluster", str(was), str(place),
                                       forces_replacement=True))
        if not changes:
            return planned(Action.NOOP)
        if any(c.forces_replacement for c in changes):
            return planned(Action.REPLACE, "GKE cannot change a node pool's accelerator, spot or "
                           "cluster", tuple(changes))
        return planned(Action.UPDATE, "", tuple(changes))

    def _pools(self, place: ClusterPlace) -> dict[str, _Pool]:
        try:
            return {p.name: p for p in self.gke.list_node_pools(cluster_ref(place))}
        except gexc.NotFound:
            return {}  # no cluster there: no node pools either

    def apply(self, request: ApplyRequest) -> LiveObject:
        a, r = request.address, request.desired
        assert r is not None, f"{request.action} of {a} without a resource"
        if request.action is Action.REPLACE:
            self.delete(request)
        place = ClusterPlace.parse(str(request.private.get("cluster", "")))
        assert place is not None, f"{a}: the plan holds no cluster for it"
        if request.action is Action.UPDATE:
            return self._update(a, r, place)
        return self._create(a, r, place)

    def delete(self, request: ApplyRequest) -> None:
        a, place = request.address, self._live_place(request)
        if self._owned(a, place) is not None:
            self.gke.delete_node_pool(ref(place, a.name))

    def _create(self, a: Address, r: Resource, place: ClusterPlace) -> LiveObject:
        want = wanted(r)
        message = node_pool_message(want, initial_node_count(want))
        message.config.labels = ownership.stamped({}, self.part_of, a.namespace)
        done = self.gke.create_node_pool(ref(place, a.name), message)
        assert isinstance(done.resource, _Pool), f"{a} is gone right after it was created"
        return live_object(a, done.resource, place)

    def _update(self, a: Address, r: Resource, place: ClusterPlace) -> LiveObject:
        pool = self._owned(a, place)
        if pool is None:
            raise ProviderError(f"{ref(place, a.name)} is gone since the plan", hint="plan again")
        have = pool_spec(pool, place)
        want = wanted(r, have)
        changed = sorted(k for k in want if k != "cluster" and want[k] != have[k])
        refused = [k for k in changed if k not in IN_PLACE]
        if refused:
            raise ProviderError(f"{ref(place, a.name)}: {', '.join(refused)} changed since the "
                                "plan, and GKE cannot change it in place", hint="plan again")
        parts = node_pool_message(want)  # the calls below send its parts
        target = ref(place, a.name)
        for field in changed:
            if field == "autoscaling":
                scaling = parts.autoscaling if want["autoscaling"] else \
                    container_v1.NodePoolAutoscaling(enabled=False)
                done = self.gke.set_node_pool_autoscaling(target, scaling)
            elif field == "machineType":
                done = self.gke.update_node_pool(target, machine_type=parts.config.machine_type)
            elif field == "zones":
                done = self.gke.update_node_pool(target, locations=list(parts.locations))
            else:
                done = self.gke.update_node_pool(target, taints=container_v1.NodeTaints(
                    taints=list(parts.config.taints)))
            if isinstance(done.resource, _Pool):
                pool = done.resource
        return live_object(a, pool, place)

    def _owned(self, a: Address, place: ClusterPlace) -> _Pool | None:
        pool = self.gke.get_node_pool(ref(place, a.name))
        if pool is not None and not ownership.owned_by(pool.config.labels, self.part_of):
            raise ProviderError(f"{ref(place, a.name)} is not labelled as managed by this "
                                f"workspace ({ownership.PART_OF}={self.part_of}); {a} leaves it "
                                "alone")
        return pool

    def _live_place(self, request: ApplyRequest) -> ClusterPlace:
        status = request.live.status if request.live is not None else {}
        found = ClusterPlace.parse(str(status.get("cluster", "")))
        if found is None:
            raise ProviderError(f"cannot tell which cluster {request.address} is in",
                                hint="plan again")
        return found

    def ready(self, live: LiveObject) -> Readiness:
        place = ClusterPlace.parse(str(live.status.get("cluster", "")))
        assert place is not None, f"{live.address} without its cluster in status"
        target = ref(place, live.address.name)
        pool = self.gke.get_node_pool(target)
        if pool is None:
            return Readiness(False, failed=True, message=f"{target} is gone")
        status = _Pool.Status
        if pool.status == status.RUNNING:
            return Readiness(True)
        message = f"{target} is {pool.status.name}"
        if pool.status_message:
            message += f": {pool.status_message}"
        failed = pool.status in (status.ERROR, status.RUNNING_WITH_ERROR, status.STOPPING)
        return Readiness(False, failed=failed, message=message)
